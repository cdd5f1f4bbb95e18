package edgectl

import (
	"context"
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

// labelConflictRetries bounds the read-modify-write retries on Conflict.
const labelConflictRetries = 5

type labelOptions struct {
	*options
	overwrite bool
	dryRun    string
}

// labelChange is the parsed list of k=v and k- arguments.
type labelChange struct {
	set    map[string]string
	remove []string
}

func newLabelCmd(o *options) *cobra.Command {
	l := &labelOptions{options: o}
	cmd := &cobra.Command{
		Use:   "label KIND NAME|KIND/NAME KEY=VALUE... KEY-...",
		Short: "Add, change or remove labels of an object",
		Example: `  edgectl label pod hello tier=demo
  edgectl label node/node-a site=b --overwrite
  edgectl label pod hello tier-`,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, rest, err := parseLabelTarget(args, l.namespace)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			change, err := parseLabelArgs(rest)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			if err := checkDryRun(l.dryRun); err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			if l.dryRun != dryRunNone {
				return l.runDry(cmd.Context(), r, change)
			}
			return l.run(cmd.Context(), r, change)
		},
	}
	cmd.Flags().BoolVar(&l.overwrite, "overwrite", false, "allow changing the value of an existing label")
	addDryRunFlag(cmd.Flags(), &l.dryRun, "only print what would be done (server: the control plane checks the change without storing it)")
	return cmd
}

// runDry prints what label would do, changing nothing.
func (l *labelOptions) runDry(ctx context.Context, r ref, change labelChange) error {
	changed, err := l.dryRunUpdate(ctx, r.kind, r.name, l.dryRun, func(obj manifests.Object) (bool, error) {
		meta := obj.GetObjectMeta()
		labels, changed, err := change.apply(meta.Labels, l.overwrite)
		meta.Labels = labels
		return changed, err
	})
	if err != nil {
		return err
	}
	if !changed {
		fmt.Fprintf(l.streams.Out, "%s/%s not labeled%s\n", r.kind.Singular, r.name, dryRunSuffix(l.dryRun))
		return nil
	}
	fmt.Fprintf(l.streams.Out, "%s/%s labeled%s\n", r.kind.Singular, r.name, dryRunSuffix(l.dryRun))
	return nil
}

// parseLabelTarget reads KIND NAME or KIND/NAME and returns the other args.
func parseLabelTarget(args []string, ns string) (ref, []string, error) {
	if len(args) == 0 {
		return ref{}, nil, fmt.Errorf("give KIND NAME or KIND/NAME and at least one label")
	}
	kindName, name, slash := strings.Cut(args[0], "/")
	rest := args[1:]
	if !slash {
		if len(rest) == 0 {
			return ref{}, nil, fmt.Errorf("give the name of the %s to label", kindName)
		}
		name, rest = rest[0], rest[1:]
	}
	k, err := lookupKind(kindName)
	if err != nil {
		return ref{}, nil, err
	}
	if name == "" {
		return ref{}, nil, fmt.Errorf("empty object name in %q", args[0])
	}
	return ref{kind: k, namespace: namespaceFor(k, ns), name: name}, rest, nil
}

// parseLabelArgs reads KEY=VALUE and KEY- arguments.
func parseLabelArgs(args []string) (labelChange, error) {
	c := labelChange{set: map[string]string{}}
	if len(args) == 0 {
		return c, fmt.Errorf("at least one label update is required")
	}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			if err := manifests.ValidateLabelKey(k); err != nil {
				return c, fmt.Errorf("invalid label key %q: %v", k, err)
			}
			if err := manifests.ValidateLabelValue(v); err != nil {
				return c, fmt.Errorf("invalid label value %q: %v", v, err)
			}
			c.set[k] = v
			continue
		}
		if k, ok := strings.CutSuffix(a, "-"); ok && k != "" {
			if err := manifests.ValidateLabelKey(k); err != nil {
				return c, fmt.Errorf("invalid label key %q: %v", k, err)
			}
			c.remove = append(c.remove, k)
			continue
		}
		return c, fmt.Errorf("invalid label spec %q: want KEY=VALUE or KEY-", a)
	}
	for _, k := range c.remove {
		if _, ok := c.set[k]; ok {
			return c, fmt.Errorf("can not both modify and remove label %q in the same command", k)
		}
	}
	return c, nil
}

// apply changes labels in place and reports whether anything changed.
func (c labelChange) apply(labels map[string]string, overwrite bool) (map[string]string, bool, error) {
	out := make(map[string]string, len(labels)+len(c.set))
	for k, v := range labels {
		out[k] = v
	}
	changed := false
	for k, v := range c.set {
		old, exists := out[k]
		if exists && old == v {
			continue
		}
		if exists && !overwrite {
			return nil, false, fmt.Errorf("'%s' already has a value (%s), and --overwrite is false", k, old)
		}
		out[k] = v
		changed = true
	}
	for _, k := range c.remove {
		if _, ok := out[k]; ok {
			delete(out, k)
			changed = true
		}
	}
	return out, changed, nil
}

func (l *labelOptions) run(ctx context.Context, r ref, change labelChange) error {
	cl, err := l.client(ctx)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		rctx, cancel := l.reqCtx(ctx)
		obj, err := cl.Get(rctx, r.kind.Resource, r.namespace, r.name)
		cancel()
		if err != nil {
			return err
		}
		meta := obj.GetObjectMeta()
		labels, changed, err := change.apply(meta.Labels, l.overwrite)
		if err != nil {
			return err
		}
		if !changed {
			fmt.Fprintf(l.streams.Out, "%s/%s not labeled\n", r.kind.Singular, r.name)
			return nil
		}
		meta.Labels = labels
		rctx, cancel = l.reqCtx(ctx)
		_, err = cl.Update(rctx, obj)
		cancel()
		if client.IsConflict(err) && attempt < labelConflictRetries {
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(l.streams.Out, "%s/%s labeled\n", r.kind.Singular, r.name)
		return nil
	}
}
