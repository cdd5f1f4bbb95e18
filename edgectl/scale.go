package edgectl

import (
	"fmt"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

type scaleOptions struct {
	*options
	replicas        int32
	currentReplicas int32
}

func newScaleCmd(o *options) *cobra.Command {
	s := &scaleOptions{options: o}
	cmd := &cobra.Command{
		Use:   "scale (deployment|replicaset|job)/NAME --replicas=N",
		Short: "Set the number of replicas of a Deployment or ReplicaSet (a Job's parallelism)",
		Long: `Set spec.replicas of a Deployment or ReplicaSet, or spec.parallelism of a Job.
With --current-replicas the change is made only if the current size matches.`,
		Example: `  edgectl scale deployment/web --replicas=6
  edgectl scale rs web-5d8f7c9b4 --replicas=0
  edgectl scale deployment/web --current-replicas=2 --replicas=3`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return usageErrorf(cmd, "the --replicas=COUNT flag is required")
			}
			if s.replicas < 0 {
				return usageErrorf(cmd, "the --replicas=COUNT flag must be >= 0")
			}
			k, name, err := parseWorkloadArg(cmd, args, "Deployment", "ReplicaSet", "Job")
			if err != nil {
				return err
			}
			err = s.updateObject(cmd.Context(), k, name, func(obj manifests.Object) error {
				return scaleObject(obj, s.replicas, s.currentReplicas)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(s.streams.Out, "%s/%s scaled\n", qualifiedSingular(k), name)
			return nil
		},
	}
	f := cmd.Flags()
	f.Int32Var(&s.replicas, "replicas", 0, "the new number of replicas (required)")
	f.Int32Var(&s.currentReplicas, "current-replicas", -1, "precondition: the current size must be this; -1 for none")
	return cmd
}

// scaleObject sets the size of obj (replicas, or a Job's parallelism),
// checking the current size against current unless it is negative.
func scaleObject(obj manifests.Object, replicas, current int32) error {
	var p **int32
	switch v := obj.(type) {
	case *manifests.Deployment:
		p = &v.Spec.Replicas
	case *manifests.ReplicaSet:
		p = &v.Spec.Replicas
	case *manifests.Job:
		p = &v.Spec.Parallelism
	default:
		return fmt.Errorf("%s cannot be scaled", objectName(obj))
	}
	cur := int32(1) // the default when unset
	if *p != nil {
		cur = **p
	}
	if current >= 0 && cur != current {
		return fmt.Errorf("expected replicas to be %d, was %d", current, cur)
	}
	*p = &replicas
	return nil
}
