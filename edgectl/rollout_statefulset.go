package edgectl

import (
	"fmt"

	"github.com/edgeorch/edgeorch/manifests"
)

// statefulSetRolloutStatus is kubectl's StatefulSetStatusViewer.
func statefulSetRolloutStatus(ss *manifests.StatefulSet) (string, bool, error) {
	s := ss.Spec
	if s.UpdateStrategy.Type != "" && s.UpdateStrategy.Type != manifests.RollingUpdateStatefulSetStrategyType {
		return "", true, fmt.Errorf("rollout status is only available for %s strategy type", manifests.RollingUpdateStatefulSetStrategyType)
	}
	st := ss.Status
	if st.ObservedGeneration == 0 || ss.Generation > st.ObservedGeneration {
		return "Waiting for statefulset spec update to be observed...", false, nil
	}
	if s.Replicas != nil && st.ReadyReplicas < *s.Replicas {
		return fmt.Sprintf("Waiting for %d pods to be ready...", *s.Replicas-st.ReadyReplicas), false, nil
	}
	if ru := s.UpdateStrategy.RollingUpdate; ru != nil {
		if s.Replicas != nil && ru.Partition != nil && st.UpdatedReplicas < *s.Replicas-*ru.Partition {
			return fmt.Sprintf("Waiting for partitioned roll out to finish: %d out of %d new pods have been updated...", st.UpdatedReplicas, *s.Replicas-*ru.Partition), false, nil
		}
		return fmt.Sprintf("partitioned roll out complete: %d new pods have been updated...", st.UpdatedReplicas), true, nil
	}
	if st.UpdateRevision != st.CurrentRevision {
		return fmt.Sprintf("waiting for statefulset rolling update to complete %d pods at revision %s...", st.UpdatedReplicas, st.UpdateRevision), false, nil
	}
	return fmt.Sprintf("statefulset rolling update complete %d pods at revision %s...", st.CurrentReplicas, st.CurrentRevision), true, nil
}
