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

// metaField is the string map of ObjectMeta that label and annotate edit:
// the same KEY=VALUE / KEY- arguments, --overwrite rule and update loop,
// with the field's own name and value check.
type metaField struct {
	verb, noun, past string // "annotate", "annotation", "annotated"
	get              func(*manifests.ObjectMeta) map[string]string
	set              func(*manifests.ObjectMeta, map[string]string)
	checkValue       func(string) error
}

var labelsField = metaField{
	verb: "label", noun: "label", past: "labeled",
	get:        func(m *manifests.ObjectMeta) map[string]string { return m.Labels },
	set:        func(m *manifests.ObjectMeta, v map[string]string) { m.Labels = v },
	checkValue: manifests.ValidateLabelValue,
}

// Annotation values are free text; their total size is checked by the
// control plane (manifests.MaxAnnotationsBytes).
var annotationsField = metaField{
	verb: "annotate", noun: "annotation", past: "annotated",
	get:        func(m *manifests.ObjectMeta) map[string]string { return m.Annotations },
	set:        func(m *manifests.ObjectMeta, v map[string]string) { m.Annotations = v },
	checkValue: func(string) error { return nil },
}

type metaOptions struct {
	*options
	field     metaField
	overwrite bool
	dryRun    string
	selector  string
}

// metaChange is the parsed list of k=v and k- arguments.
type metaChange struct {
	set    map[string]string
	remove []string
}

func newLabelCmd(o *options) *cobra.Command {
	return newMetaCmd(o, labelsField, "Add, change or remove labels of an object", `  edgectl label pod hello tier=demo
  edgectl label node/node-a site=b --overwrite
  edgectl label pods -l app=hello tier=demo
  edgectl label pod hello tier-`)
}

// newMetaCmd builds `edgectl label` or `edgectl annotate`.
func newMetaCmd(o *options, f metaField, short, example string) *cobra.Command {
	l := &metaOptions{options: o, field: f}
	cmd := &cobra.Command{
		Use:     fmt.Sprintf("%s KIND NAME|KIND/NAME|KIND -l SELECTOR KEY=VALUE... KEY-...", f.verb),
		Short:   short,
		Example: example,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, names, rest, err := parseMetaTarget(f, args, l.selector)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			change, err := f.parseArgs(rest)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			if err := checkDryRun(l.dryRun); err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			if l.selector != "" {
				if names, err = l.selected(cmd.Context(), k); err != nil {
					return err
				}
			}
			for _, name := range names {
				r := ref{kind: k, namespace: namespaceFor(k, l.namespace), name: name}
				if l.dryRun != dryRunNone {
					err = l.runDry(cmd.Context(), r, change)
				} else {
					err = l.run(cmd.Context(), r, change)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&l.overwrite, "overwrite", false, fmt.Sprintf("allow changing the value of an existing %s", f.noun))
	cmd.Flags().StringVarP(&l.selector, "selector", "l", "", fmt.Sprintf("%s every object of KIND matching this label selector (e.g. app=web)", f.noun))
	addDryRunFlag(cmd.Flags(), &l.dryRun, "only print what would be done (server: the control plane checks the change without storing it)")
	return cmd
}

// selected lists the names of the objects of kind k matching the selector.
func (l *metaOptions) selected(ctx context.Context, k manifests.Kind) ([]string, error) {
	if _, err := manifests.ParseSelector(l.selector); err != nil {
		return nil, fmt.Errorf("invalid --selector %q: %w", l.selector, err)
	}
	cl, err := l.client(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := l.reqCtx(ctx)
	defer cancel()
	ns := namespaceFor(k, l.namespace)
	objs, _, err := cl.List(rctx, k.Resource, ns, l.selector)
	if err != nil {
		return nil, fmt.Errorf("list %s matching %q: %w", k.Resource, l.selector, err)
	}
	if len(objs) == 0 {
		where := ""
		if ns != "" {
			where = fmt.Sprintf(" in namespace %q", ns)
		}
		return nil, fmt.Errorf("no %s match the selector %q%s: nothing to %s", k.Resource, l.selector, where, l.field.verb)
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		names = append(names, o.GetObjectMeta().Name)
	}
	return names, nil
}

// runDry prints what the command would do, changing nothing.
func (l *metaOptions) runDry(ctx context.Context, r ref, change metaChange) error {
	f := l.field
	changed, err := l.dryRunUpdate(ctx, r.kind, r.name, l.dryRun, func(obj manifests.Object) (bool, error) {
		meta := obj.GetObjectMeta()
		m, changed, err := change.apply(f.get(meta), l.overwrite)
		f.set(meta, m)
		return changed, err
	})
	if err != nil {
		return err
	}
	if !changed {
		fmt.Fprintf(l.streams.Out, "%s/%s not %s%s\n", r.kind.Singular, r.name, f.past, dryRunSuffix(l.dryRun))
		return nil
	}
	fmt.Fprintf(l.streams.Out, "%s/%s %s%s\n", r.kind.Singular, r.name, f.past, dryRunSuffix(l.dryRun))
	return nil
}

// parseLabelTarget reads KIND NAME or KIND/NAME and returns the other args.
func parseLabelTarget(args []string, ns string) (ref, []string, error) {
	k, names, rest, err := parseMetaTarget(labelsField, args, "")
	if err != nil {
		return ref{}, nil, err
	}
	return ref{kind: k, namespace: namespaceFor(k, ns), name: names[0]}, rest, nil
}

// parseMetaTarget reads KIND NAME or KIND/NAME (or, with a selector, KIND
// alone) and returns the kind, the name and the other args.
func parseMetaTarget(f metaField, args []string, selector string) (manifests.Kind, []string, []string, error) {
	if len(args) == 0 {
		if selector != "" {
			return manifests.Kind{}, nil, nil, fmt.Errorf("give KIND and at least one %s", f.noun)
		}
		return manifests.Kind{}, nil, nil, fmt.Errorf("give KIND NAME or KIND/NAME and at least one %s", f.noun)
	}
	kindName, name, slash := strings.Cut(args[0], "/")
	rest := args[1:]
	if selector != "" {
		if slash {
			return manifests.Kind{}, nil, nil, fmt.Errorf("give either a name (%s) or --selector, not both", args[0])
		}
		k, err := lookupKind(kindName)
		return k, nil, rest, err
	}
	if !slash {
		if len(rest) == 0 {
			return manifests.Kind{}, nil, nil, fmt.Errorf("give the name of the %s to %s", kindName, f.verb)
		}
		name, rest = rest[0], rest[1:]
	}
	k, err := lookupKind(kindName)
	if err != nil {
		return manifests.Kind{}, nil, nil, err
	}
	if name == "" {
		return manifests.Kind{}, nil, nil, fmt.Errorf("empty object name in %q", args[0])
	}
	return k, []string{name}, rest, nil
}

// parseLabelArgs reads label KEY=VALUE and KEY- arguments.
func parseLabelArgs(args []string) (metaChange, error) { return labelsField.parseArgs(args) }

// parseArgs reads KEY=VALUE and KEY- arguments.
func (f metaField) parseArgs(args []string) (metaChange, error) {
	c := metaChange{set: map[string]string{}}
	if len(args) == 0 {
		return c, fmt.Errorf("at least one %s update is required", f.noun)
	}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			if err := manifests.ValidateLabelKey(k); err != nil {
				return c, fmt.Errorf("invalid %s key %q: %v", f.noun, k, err)
			}
			if err := f.checkValue(v); err != nil {
				return c, fmt.Errorf("invalid %s value %q: %v", f.noun, v, err)
			}
			c.set[k] = v
			continue
		}
		if k, ok := strings.CutSuffix(a, "-"); ok && k != "" {
			if err := manifests.ValidateLabelKey(k); err != nil {
				return c, fmt.Errorf("invalid %s key %q: %v", f.noun, k, err)
			}
			c.remove = append(c.remove, k)
			continue
		}
		return c, fmt.Errorf("invalid %s spec %q: want KEY=VALUE or KEY-", f.noun, a)
	}
	for _, k := range c.remove {
		if _, ok := c.set[k]; ok {
			return c, fmt.Errorf("can not both modify and remove %s %q in the same command", f.noun, k)
		}
	}
	return c, nil
}

// apply returns m with the change made (m itself is not modified) and
// reports whether anything changed. Changing an existing value needs
// overwrite, as in kubectl; setting the same value again is no change.
func (c metaChange) apply(m map[string]string, overwrite bool) (map[string]string, bool, error) {
	out := make(map[string]string, len(m)+len(c.set))
	for k, v := range m {
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
	if len(out) == 0 {
		out = nil
	}
	return out, changed, nil
}

// run reads the object, applies the change and writes it back, retrying
// on a conflicting concurrent write.
func (l *metaOptions) run(ctx context.Context, r ref, change metaChange) error {
	f := l.field
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
		m, changed, err := change.apply(f.get(meta), l.overwrite)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", r.kind.Singular, r.name, err)
		}
		if !changed {
			fmt.Fprintf(l.streams.Out, "%s/%s not %s\n", r.kind.Singular, r.name, f.past)
			return nil
		}
		f.set(meta, m)
		rctx, cancel = l.reqCtx(ctx)
		_, err = cl.Update(rctx, obj)
		cancel()
		if client.IsConflict(err) && attempt < labelConflictRetries {
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(l.streams.Out, "%s/%s %s\n", r.kind.Singular, r.name, f.past)
		return nil
	}
}
