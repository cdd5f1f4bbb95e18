package api

import (
	"context"
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/manifests"
)

// admitNew checks an object about to be created, then allocates what it
// needs (allocate). A new Rollout is refused with Conflict while another
// unfinished Rollout (not started, Progressing or Paused) targets the same
// workload: one rollout per target. Two created at the same moment by two
// API processes can both pass; the rollout controller then fails the later
// one.
func (s *Server) admitNew(ctx context.Context, obj manifests.Object) (*ipam.Allocation, error) {
	if ro, ok := obj.(*manifests.Rollout); ok {
		if err := s.admitRollout(ctx, ro); err != nil {
			return nil, err
		}
	}
	return s.allocate(ctx, obj, nil)
}

func (s *Server) admitRollout(ctx context.Context, ro *manifests.Rollout) error {
	list, _, err := s.st.List(ctx, "rollouts", ro.Namespace, manifests.Selector{})
	if err != nil {
		return fmt.Errorf("list rollouts of %s: %w", ro.Namespace, err)
	}
	for _, o := range list {
		other := o.(*manifests.Rollout)
		if other.Name == ro.Name || other.Spec.TargetRef != ro.Spec.TargetRef || !manifests.RolloutUnfinished(other) {
			continue
		}
		return client.Errorf(client.CodeConflict, "%s", manifests.RolloutTargetTaken(ro, other))
	}
	return nil
}
