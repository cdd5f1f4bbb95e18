package edgectl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

type getOptions struct {
	*options
	output     string
	selector   string
	watch      bool
	showLabels bool
	// showSecrets prints the values of Secrets with -o json|yaml|jsonpath
	// (otherwise "<redacted: N bytes>").
	showSecrets bool
}

func newGetCmd(o *options) *cobra.Command {
	g := &getOptions{options: o}
	cmd := &cobra.Command{
		Use:   "get KIND[,KIND...] [NAME...] | KIND/NAME...",
		Short: "Display one or many objects",
		Example: `  edgectl get pods
  edgectl get pod hello -o json
  edgectl get pods,cm -l app=hello -A
  edgectl get nodes -o wide`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validOutput(g.output); err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			targets, withKind, err := parseResourceArgs(args)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			if g.selector != "" {
				if _, err := manifests.ParseSelector(g.selector); err != nil {
					return usageErrorf(cmd, "%v", err)
				}
			}
			if g.watch {
				if len(targets) != 1 {
					return usageErrorf(cmd, "you may only specify a single resource type with --watch")
				}
				return g.runWatch(cmd.Context(), targets[0])
			}
			return g.run(cmd.Context(), targets, withKind)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&g.output, "output", "o", "", "output format: wide|json|yaml|name|jsonpath={...}|custom-columns=HEADER:.json.path,...|custom-columns-file=FILE")
	f.StringVarP(&g.selector, "selector", "l", "", "label selector, e.g. app=hello,tier!=db")
	f.BoolVarP(&g.watch, "watch", "w", false, "after listing, watch for changes")
	f.BoolVar(&g.showLabels, "show-labels", false, "add a LABELS column to tables")
	f.BoolVar(&g.showSecrets, "show-secrets", false, "print the values of Secrets with -o json|yaml|jsonpath (redacted otherwise)")
	return cmd
}

// fetch returns the objects of one target: the named ones (reporting each
// failure and going on) or a list.
func (g *getOptions) fetch(ctx context.Context, cl *client.Client, t resourceArgs) ([]manifests.Object, bool, error) {
	failed := false
	if len(t.Names) == 0 {
		rctx, cancel := g.reqCtx(ctx)
		defer cancel()
		objs, _, err := cl.List(rctx, t.Kind.Resource, namespaceFor(t.Kind, g.listNamespace()), g.selector)
		if err != nil {
			return nil, false, fmt.Errorf("list %s: %w", t.Kind.Resource, err)
		}
		return objs, false, nil
	}
	var objs []manifests.Object
	sel, _ := manifests.ParseSelector(g.selector)
	for _, name := range t.Names {
		rctx, cancel := g.reqCtx(ctx)
		obj, err := cl.Get(rctx, t.Kind.Resource, namespaceFor(t.Kind, g.namespace), name)
		cancel()
		if err != nil {
			if client.CodeOf(err) == "" || client.CodeOf(err) == client.CodeUnavailable {
				return nil, false, err
			}
			g.reportError(withNamespaceHint(ctx, cl, err, t.Kind, g.namespace, name))
			failed = true
			continue
		}
		if sel.Matches(obj.GetObjectMeta().Labels) {
			objs = append(objs, obj)
		}
	}
	return objs, failed, nil
}

func (g *getOptions) run(ctx context.Context, targets []resourceArgs, withKind bool) error {
	cl, err := g.client(ctx)
	if err != nil {
		return err
	}
	failed := false
	var all []manifests.Object
	printedTables := 0
	now := time.Now()
	for _, t := range targets {
		objs, f, err := g.fetch(ctx, cl, t)
		if err != nil {
			return err
		}
		failed = failed || f
		if len(t.Names) == 0 {
			sortForTable(objs)
		}
		switch g.output {
		case outputTable, outputWide:
			if len(objs) == 0 {
				continue
			}
			if printedTables > 0 {
				fmt.Fprintln(g.streams.Out)
			}
			opts := tableOptions{Wide: g.output == outputWide, WithNamespace: g.allNamespaces, WithKind: withKind, ShowLabels: g.showLabels, Now: now}
			if err := printTable(g.streams.Out, t.Kind, objs, opts); err != nil {
				return err
			}
			printedTables++
		default:
			all = append(all, objs...)
		}
	}
	switch g.output {
	case outputTable, outputWide:
		if printedTables == 0 && !failed {
			g.printNoResources(targets)
		}
	default:
		single := len(targets) == 1 && len(targets[0].Names) == 1
		if single && len(all) == 0 {
			break
		}
		if isCustomColumns(g.output) && len(all) == 0 {
			if !failed {
				g.printNoResources(targets)
			}
			break
		}
		if err := printObjectsShowing(g.streams.Out, g.output, all, single, g.showSecrets); err != nil {
			return err
		}
	}
	if failed {
		return errReported
	}
	return nil
}

func (g *getOptions) printNoResources(targets []resourceArgs) {
	namespaced := false
	for _, t := range targets {
		namespaced = namespaced || t.Kind.Namespaced
	}
	if namespaced && !g.allNamespaces {
		fmt.Fprintf(g.streams.ErrOut, "No resources found in %s namespace.\n", g.namespace)
		return
	}
	fmt.Fprintln(g.streams.ErrOut, "No resources found")
}

// runWatch prints the current objects and then one row (or object) per change.
func (g *getOptions) runWatch(ctx context.Context, t resourceArgs) error {
	cl, err := g.client(ctx)
	if err != nil {
		return err
	}
	ns := namespaceFor(t.Kind, g.listNamespace())
	if len(t.Names) > 0 {
		ns = namespaceFor(t.Kind, g.namespace)
	}
	events, err := cl.Watch(ctx, t.Kind.Resource, ns, g.selector)
	if err != nil {
		return fmt.Errorf("watch %s: %w", t.Kind.Resource, err)
	}
	wanted := map[string]bool{}
	for _, n := range t.Names {
		wanted[n] = true
	}
	opts := tableOptions{Wide: g.output == outputWide, WithNamespace: g.allNamespaces, ShowLabels: g.showLabels}
	headerDone := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if err := ctx.Err(); err != nil {
					return nil
				}
				return errors.New("watch ended unexpectedly")
			}
			if len(wanted) > 0 && !wanted[ev.Object.GetObjectMeta().Name] {
				continue
			}
			if err := g.printWatchEvent(ev, opts, &headerDone, t.Kind); err != nil {
				return err
			}
		}
	}
}

func (g *getOptions) printWatchEvent(ev client.Event, opts tableOptions, headerDone *bool, k manifests.Kind) error {
	switch g.output {
	case outputTable, outputWide:
		tw := newTabWriter(g.streams.Out)
		if !*headerDone {
			fmt.Fprintln(tw, strings.Join(tableHeaders(k, opts), "\t"))
			*headerDone = true
		}
		opts.Now = time.Now()
		fmt.Fprintln(tw, strings.Join(tableRow(ev.Object, opts), "\t"))
		return tw.Flush()
	default:
		if cc, ok, err := parseCustomColumnsFormat(g.output); ok {
			if err != nil {
				return err
			}
			first := !*headerDone
			*headerDone = true
			return cc.print(g.streams.Out, []manifests.Object{ev.Object}, first, g.showSecrets)
		}
		return printObjectsShowing(g.streams.Out, g.output, []manifests.Object{ev.Object}, true, g.showSecrets)
	}
}
