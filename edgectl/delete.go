package edgectl

import (
	"context"
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

type deleteOptions struct {
	*options
	files          []string
	recursive      bool
	selector       string
	all            bool
	ignoreNotFound bool
	output         string
	cascade        string
	policy         string // the API's propagationPolicy, from --cascade
	dryRun         string // none, client or server
}

func newDeleteCmd(o *options) *cobra.Command {
	d := &deleteOptions{options: o}
	cmd := &cobra.Command{
		Use:   "delete KIND NAME... | KIND/NAME... | -f FILE | KIND -l SELECTOR",
		Short: "Delete objects by name, by manifest or by label selector",
		Example: `  edgectl delete pod hello
  edgectl delete -f app.yaml
  edgectl delete pods -l app=hello
  edgectl delete deployment web --cascade=foreground
  edgectl delete deployment web --cascade=orphan`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if d.output != "" && d.output != outputName {
				return usageErrorf(cmd, "delete supports only -o name")
			}
			policy, err := parseCascade(d.cascade)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			d.policy = policy
			if err := checkDryRun(d.dryRun); err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			if len(d.files) > 0 {
				if len(args) > 0 || d.selector != "" || d.all {
					return usageErrorf(cmd, "cannot combine -f with resource arguments, -l or --all")
				}
				return d.runFiles(cmd.Context())
			}
			targets, _, err := parseResourceArgs(args)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			for _, t := range targets {
				named := len(t.Names) > 0
				if named && (d.selector != "" || d.all) {
					return usageErrorf(cmd, "names cannot be given with -l or --all")
				}
				if !named && d.selector == "" && !d.all {
					return usageErrorf(cmd, "resource(s) were provided, but no name was specified; give names, -l SELECTOR or --all")
				}
			}
			if d.selector != "" {
				if _, err := manifests.ParseSelector(d.selector); err != nil {
					return usageErrorf(cmd, "%v", err)
				}
			}
			return d.run(cmd.Context(), targets)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&d.files, "filename", "f", nil, "manifest file, directory or - naming the objects to delete")
	f.BoolVarP(&d.recursive, "recursive", "R", false, "read directories recursively")
	f.StringVarP(&d.selector, "selector", "l", "", "delete the objects matching this label selector")
	f.BoolVar(&d.all, "all", false, "delete every object of the kinds given in the namespace")
	f.BoolVar(&d.ignoreNotFound, "ignore-not-found", false, "treat a missing object as deleted")
	f.StringVarP(&d.output, "output", "o", "", "output format: name")
	f.StringVar(&d.cascade, "cascade", "background", `what becomes of the dependents (e.g. a Deployment's ReplicaSets and pods): "background" (deleted after the object), "foreground" (deleted before it) or "orphan" (left in place)`)
	f.Lookup("cascade").NoOptDefVal = "background"
	addDryRunFlag(f, &d.dryRun, "only print what would be deleted (the API has no dry-run delete: server is client)")
	return cmd
}

// parseCascade maps --cascade to the API's propagation policy; "true" and
// "false" are kubectl's older spellings of background and orphan.
func parseCascade(s string) (string, error) {
	switch strings.ToLower(s) {
	case "background", "true":
		return client.DeletePropagationBackground, nil
	case "foreground":
		return client.DeletePropagationForeground, nil
	case "orphan", "false":
		return client.DeletePropagationOrphan, nil
	}
	return "", fmt.Errorf(`invalid --cascade %q: must be "background", "foreground" or "orphan"`, s)
}

// ref names one object to delete.
type ref struct {
	kind      manifests.Kind
	namespace string
	name      string
}

func (d *deleteOptions) run(ctx context.Context, targets []resourceArgs) error {
	cl, err := d.client(ctx)
	if err != nil {
		return err
	}
	var refs []ref
	for _, t := range targets {
		if len(t.Names) > 0 {
			for _, n := range t.Names {
				refs = append(refs, ref{kind: t.Kind, namespace: namespaceFor(t.Kind, d.namespace), name: n})
			}
			continue
		}
		rctx, cancel := d.reqCtx(ctx)
		objs, _, err := cl.List(rctx, t.Kind.Resource, namespaceFor(t.Kind, d.listNamespace()), d.selector)
		cancel()
		if err != nil {
			return fmt.Errorf("list %s: %w", t.Kind.Resource, err)
		}
		sortForTable(objs)
		for _, obj := range objs {
			m := obj.GetObjectMeta()
			refs = append(refs, ref{kind: t.Kind, namespace: m.Namespace, name: m.Name})
		}
	}
	if len(refs) == 0 && !d.ignoreNotFound {
		if d.allNamespaces || !targets[0].Kind.Namespaced {
			fmt.Fprintln(d.streams.ErrOut, "No resources found")
		} else {
			fmt.Fprintf(d.streams.ErrOut, "No resources found in %s namespace.\n", d.namespace)
		}
	}
	return d.deleteAll(ctx, cl, refs)
}

func (d *deleteOptions) runFiles(ctx context.Context) error {
	srcs, err := readSources(d.streams.In, d.files, d.recursive)
	if err != nil {
		return err
	}
	objs, err := decodeSources(srcs)
	if err != nil {
		return err
	}
	if err := resolveNamespaces(objs, d.namespace, d.nsExplicit()); err != nil {
		return err
	}
	cl, err := d.client(ctx)
	if err != nil {
		return err
	}
	refs := make([]ref, 0, len(objs))
	for _, so := range objs {
		m := so.Object.GetObjectMeta()
		refs = append(refs, ref{kind: kindOf(so.Object), namespace: m.Namespace, name: m.Name})
	}
	return d.deleteAll(ctx, cl, refs)
}

// deleteAll deletes each object, reporting failures and going on.
func (d *deleteOptions) deleteAll(ctx context.Context, cl *client.Client, refs []ref) error {
	failed := false
	for _, r := range refs {
		rctx, cancel := d.reqCtx(ctx)
		var err error
		if d.dryRun == dryRunNone {
			_, err = cl.DeleteWithOptions(rctx, client.DeleteRequest{
				Resource: r.kind.Resource, Namespace: r.namespace, Name: r.name, PropagationPolicy: d.policy,
			})
		} else {
			// The API has no dry-run delete: both modes read the object.
			_, err = cl.Get(rctx, r.kind.Resource, r.namespace, r.name)
		}
		cancel()
		if err != nil {
			if d.ignoreNotFound && client.IsNotFound(err) {
				continue
			}
			d.reportError(err)
			failed = true
			continue
		}
		if d.output == outputName {
			fmt.Fprintf(d.streams.Out, "%s/%s\n", qualifiedSingular(r.kind), r.name)
		} else {
			fmt.Fprintf(d.streams.Out, "%s %q deleted%s\n", qualifiedSingular(r.kind), r.name, dryRunSuffix(d.dryRun))
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// checkDryRun checks a --dry-run value.
func checkDryRun(mode string) error {
	switch mode {
	case dryRunNone, dryRunClient, dryRunServer:
		return nil
	}
	return fmt.Errorf("invalid dry-run value (%s). Must be \"none\", \"server\", or \"client\"", mode)
}
