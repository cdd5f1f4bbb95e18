package deployment

import (
	"context"

	"github.com/edgeorch/edgeorch/manifests"
)

// rolloutRolling runs one step of a RollingUpdate: grow the new
// ReplicaSet within maxSurge, shrink old ones within maxUnavailable. A
// partition (rollout.edge.io/partition: N) caps the new ReplicaSet at N
// and keeps the old ones at spec.replicas-N or more.
func (s *syncer) rolloutRolling(ctx context.Context) error {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, true)
	if err != nil {
		return err
	}
	scaledUp, err := s.reconcileNewReplicaSet(ctx, newRS, old)
	if err != nil {
		return err
	}
	newRS, old = s.refresh(newRS, old)
	if scaledUp {
		return s.syncRolloutStatus(ctx, s.all(newRS, old), newRS)
	}
	scaledDown, err := s.reconcileOldReplicaSets(ctx, newRS, old)
	if err != nil {
		return err
	}
	newRS, old = s.refresh(newRS, old)
	if scaledDown {
		return s.syncRolloutStatus(ctx, s.all(newRS, old), newRS)
	}
	if DeploymentComplete(s.d, &s.d.Status) {
		if err := s.cleanupDeployment(ctx, old); err != nil {
			return err
		}
	}
	return s.syncRolloutStatus(ctx, s.all(newRS, old), newRS)
}

func (s *syncer) reconcileNewReplicaSet(ctx context.Context, newRS *manifests.ReplicaSet, old []*manifests.ReplicaSet) (bool, error) {
	d := s.d
	target := newRSTarget(d)
	if rsReplicas(newRS) == target {
		return false, nil
	}
	if rsReplicas(newRS) > target {
		scaled, _, err := s.scaleReplicaSetAndRecordEvent(ctx, newRS, target)
		return scaled, err
	}
	n, err := newRSNewReplicas(d, s.all(newRS, old), newRS)
	if err != nil {
		return false, err
	}
	scaled, _, err := s.scaleReplicaSetAndRecordEvent(ctx, newRS, min(n, target))
	return scaled, err
}

// reconcileOldReplicaSets scales old ReplicaSets down as far as
// maxUnavailable allows, unhealthy replicas first.
func (s *syncer) reconcileOldReplicaSets(ctx context.Context, newRS *manifests.ReplicaSet, old []*manifests.ReplicaSet) (bool, error) {
	d := s.d
	oldActive := filterActive(old)
	oldTotal := sumReplicas(oldActive, specReplicas)
	if oldTotal == 0 {
		return false, nil
	}
	allPods := sumReplicas(s.all(newRS, old), specReplicas)
	minAvailable := dReplicas(d) - MaxUnavailable(d)
	newUnavailable := rsReplicas(newRS) - newRS.Status.AvailableReplicas
	maxScaledDown := min(allPods-minAvailable-newUnavailable, oldTotal-oldRSFloor(d))
	if maxScaledDown <= 0 {
		return false, nil
	}
	// Old replicas that are not available can go first: they do not
	// count towards availability.
	oldActive, cleaned, err := s.cleanupUnhealthyReplicas(ctx, oldActive, maxScaledDown)
	if err != nil {
		return false, err
	}
	all := append(append([]*manifests.ReplicaSet(nil), oldActive...), newRS)
	scaled, err := s.scaleDownOldForRollingUpdate(ctx, all, oldActive)
	if err != nil {
		return false, err
	}
	return cleaned+scaled > 0, nil
}

func (s *syncer) cleanupUnhealthyReplicas(ctx context.Context, old []*manifests.ReplicaSet, maxCleanup int32) ([]*manifests.ReplicaSet, int32, error) {
	sortByCreation(old)
	var total int32
	for i, rs := range old {
		if total >= maxCleanup {
			break
		}
		if rsReplicas(rs) == 0 || rsReplicas(rs) == rs.Status.AvailableReplicas {
			continue
		}
		n := min(maxCleanup-total, rsReplicas(rs)-rs.Status.AvailableReplicas)
		if n <= 0 {
			continue
		}
		_, updated, err := s.scaleReplicaSetAndRecordEvent(ctx, rs, rsReplicas(rs)-n)
		if err != nil {
			return nil, total, err
		}
		total += n
		old[i] = updated
	}
	return old, total, nil
}

func (s *syncer) scaleDownOldForRollingUpdate(ctx context.Context, all, old []*manifests.ReplicaSet) (int32, error) {
	d := s.d
	minAvailable := dReplicas(d) - MaxUnavailable(d)
	// Kubernetes sums status.availableReplicas; a ReplicaSet just scaled
	// down may still report the pods it is deleting, so count at most
	// spec.replicas of each (never more than will remain).
	available := sumReplicas(all, func(rs *manifests.ReplicaSet) int32 {
		return min(rs.Status.AvailableReplicas, rsReplicas(rs))
	})
	if available <= minAvailable {
		return 0, nil
	}
	sortByCreation(old)
	// A partition keeps spec.replicas-N replicas on the old templates.
	want := min(available-minAvailable, sumReplicas(old, specReplicas)-oldRSFloor(d))
	var total int32
	for _, rs := range old {
		if total >= want {
			break
		}
		if rsReplicas(rs) == 0 {
			continue
		}
		n := min(rsReplicas(rs), want-total)
		if _, _, err := s.scaleReplicaSetAndRecordEvent(ctx, rs, rsReplicas(rs)-n); err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}
