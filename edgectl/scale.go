package edgectl

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type scaleOptions struct {
	*options
	replicas        int32
	currentReplicas int32
	dryRun          string
}

func newScaleCmd(o *options) *cobra.Command {
	s := &scaleOptions{options: o}
	cmd := &cobra.Command{
		Use:   "scale (deployment|replicaset|statefulset|job)/NAME --replicas=N",
		Short: "Set the number of replicas of a Deployment, ReplicaSet or StatefulSet (a Job's parallelism)",
		Long: `Set spec.replicas of a Deployment, ReplicaSet or StatefulSet, or spec.parallelism of a Job.
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
			if err := checkDryRun(s.dryRun); err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			k, name, err := parseWorkloadArg(cmd, args, "Deployment", "ReplicaSet", "StatefulSet", "Job")
			if err != nil {
				return err
			}
			if s.dryRun != dryRunNone {
				_, err := s.dryRunUpdate(cmd.Context(), k, name, s.dryRun, func(obj manifests.Object) (bool, error) {
					return true, scaleObject(obj, s.replicas, s.currentReplicas)
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(s.streams.Out, "%s/%s scaled%s\n", qualifiedSingular(k), name, dryRunSuffix(s.dryRun))
				return nil
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
	addDryRunFlag(f, &s.dryRun, "only print what would be done (server: the control plane checks the change without storing it)")
	return cmd
}

// addDryRunFlag adds --dry-run=none|client|server (bare: client).
func addDryRunFlag(f *pflag.FlagSet, p *string, usage string) {
	f.StringVar(p, "dry-run", dryRunNone, "none, client or server: "+usage)
	f.Lookup("dry-run").NoOptDefVal = dryRunClient
}

// dryRunUpdate is updateObject without the write: it reads the object and
// changes it with mutate, which reports whether anything changed. With
// --dry-run=server the changed object also goes to the API as a dry-run
// apply (the update verb has none), so that the control plane checks it
// (validation, resourceVersion) and stores nothing.
func (o *options) dryRunUpdate(ctx context.Context, k manifests.Kind, name, mode string, mutate func(manifests.Object) (bool, error)) (bool, error) {
	cl, err := o.client(ctx)
	if err != nil {
		return false, err
	}
	rctx, cancel := o.reqCtx(ctx)
	obj, err := cl.Get(rctx, k.Resource, namespaceFor(k, o.namespace), name)
	cancel()
	if err != nil {
		return false, err
	}
	changed, err := mutate(obj)
	if err != nil || !changed || mode != dryRunServer {
		return changed, err
	}
	if err := manifests.SetKind(obj); err != nil {
		return false, err
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", objectName(obj), err)
	}
	rctx, cancel = o.reqCtx(ctx)
	defer cancel()
	if _, _, err := cl.ApplyRaw(rctx, raw, true); err != nil {
		return false, err
	}
	return true, nil
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
	case *manifests.StatefulSet:
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
