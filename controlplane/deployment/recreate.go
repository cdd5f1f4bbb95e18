package deployment

import (
	"context"

	"github.com/edgeorch/edgeorch/manifests"
)

// rolloutRecreate scales every old ReplicaSet to 0, waits until their
// pods are gone, then scales the new one up.
func (s *syncer) rolloutRecreate(ctx context.Context) error {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, false)
	if err != nil {
		return err
	}
	scaledDown := false
	for _, rs := range filterActive(old) {
		scaled, _, err := s.scaleReplicaSetAndRecordEvent(ctx, rs, 0)
		if err != nil {
			return err
		}
		scaledDown = scaledDown || scaled
	}
	newRS, old = s.refresh(newRS, old)
	if scaledDown || s.oldPodsRunning(newRS, old) {
		return s.syncRolloutStatus(ctx, s.all(newRS, old), newRS)
	}
	if newRS == nil {
		newRS, old, err = s.getAllReplicaSetsAndSyncRevision(ctx, true)
		if err != nil {
			return err
		}
	}
	if _, _, err := s.scaleReplicaSetAndRecordEvent(ctx, newRS, dReplicas(s.d)); err != nil {
		return err
	}
	newRS, old = s.refresh(newRS, old)
	if DeploymentComplete(s.d, &s.d.Status) {
		if err := s.cleanupDeployment(ctx, old); err != nil {
			return err
		}
	}
	return s.syncRolloutStatus(ctx, s.all(newRS, old), newRS)
}

// oldPodsRunning reports whether pods of the old ReplicaSets still exist
// (and are not finished).
func (s *syncer) oldPodsRunning(newRS *manifests.ReplicaSet, old []*manifests.ReplicaSet) bool {
	if sumReplicas(old, statusReplicas) > 0 {
		return true
	}
	oldUIDs := map[string]bool{}
	for _, rs := range old {
		oldUIDs[rs.UID] = true
	}
	for _, o := range s.c.pods.List(manifests.Selector{}) {
		pod := o.(*manifests.Pod)
		if pod.Namespace != s.d.Namespace {
			continue
		}
		ref := manifests.GetControllerOf(pod)
		if ref == nil || !oldUIDs[ref.UID] {
			continue
		}
		if pod.Status.Phase != manifests.PodSucceeded && pod.Status.Phase != manifests.PodFailed {
			return true
		}
	}
	return false
}
