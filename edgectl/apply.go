package edgectl

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/spf13/cobra"
)

// Dry-run modes.
const (
	dryRunNone   = "none"
	dryRunClient = "client"
	dryRunServer = "server"
)

type applyOptions struct {
	*options
	files     []string
	recursive bool
	dryRun    string
	output    string
}

func newApplyCmd(o *options) *cobra.Command {
	a := &applyOptions{options: o}
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests",
		Example: `  edgectl apply -f app.yaml
  edgectl apply -f manifests/ -R
  cat pod.yaml | edgectl apply -f -`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf(cmd, "unexpected arguments %q; give manifests with -f", args)
			}
			if len(a.files) == 0 {
				return usageErrorf(cmd, "must specify one of -f")
			}
			switch a.dryRun {
			case dryRunNone, dryRunClient, dryRunServer:
			default:
				return usageErrorf(cmd, "invalid dry-run value (%s). Must be \"none\", \"server\", or \"client\"", a.dryRun)
			}
			if a.output != "" && a.output != outputName {
				return usageErrorf(cmd, "apply supports only -o name")
			}
			return a.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&a.files, "filename", "f", nil, "manifest file, directory or - for stdin (repeatable)")
	f.BoolVarP(&a.recursive, "recursive", "R", false, "read directories recursively")
	f.StringVar(&a.dryRun, "dry-run", dryRunNone, "none, client or server: only show what would be done")
	f.Lookup("dry-run").NoOptDefVal = dryRunClient
	f.StringVarP(&a.output, "output", "o", "", "output format: name")
	return cmd
}

func (a *applyOptions) run(ctx context.Context) error {
	srcs, err := readSources(a.streams.In, a.files, a.recursive)
	if err != nil {
		return err
	}
	objs, err := decodeSources(srcs)
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return fmt.Errorf("no objects passed to apply")
	}
	if err := resolveNamespaces(objs, a.namespace, a.nsExplicit()); err != nil {
		return err
	}
	if err := validateObjects(objs); err != nil {
		return err
	}
	namespacesFirst(objs)

	cl, err := a.client(ctx)
	if err != nil {
		return err
	}
	failed := false
	for _, so := range objs {
		result, err := a.applyOne(ctx, cl, so)
		if err != nil {
			a.reportError(err)
			failed = true
			continue
		}
		name := objectName(so.Object)
		if a.output == outputName {
			fmt.Fprintln(a.streams.Out, name)
			continue
		}
		fmt.Fprintf(a.streams.Out, "%s %s%s\n", name, result, dryRunSuffix(a.dryRun))
	}
	if failed {
		return errReported
	}
	return nil
}

func dryRunSuffix(mode string) string {
	switch mode {
	case dryRunClient:
		return " (dry run)"
	case dryRunServer:
		return " (server dry run)"
	}
	return ""
}

// applyOne sends one object, or with --dry-run=client only asks whether it exists.
func (a *applyOptions) applyOne(ctx context.Context, cl *client.Client, so sourceObject) (string, error) {
	rctx, cancel := a.reqCtx(ctx)
	defer cancel()
	k := kindOf(so.Object)
	meta := so.Object.GetObjectMeta()
	if a.dryRun == dryRunClient {
		_, err := cl.Get(rctx, k.Resource, meta.Namespace, meta.Name)
		switch {
		case err == nil:
			return client.ResultConfigured, nil
		case client.IsNotFound(err):
			return client.ResultCreated, nil
		default:
			return "", err
		}
	}
	raw, err := json.Marshal(so.Object)
	if err != nil {
		return "", fmt.Errorf("%s: encode %s: %w", so.Source, objectName(so.Object), err)
	}
	result, _, err := cl.ApplyRaw(rctx, raw, a.dryRun == dryRunServer)
	if err != nil {
		return "", err
	}
	return result, nil
}
