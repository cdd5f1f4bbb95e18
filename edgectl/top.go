package edgectl

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

// errMetricsNotAvailable is kubectl's message when nothing has reported.
var errMetricsNotAvailable = errors.New("metrics not available yet")

// unknown stands for a figure not reported (yet).
const unknown = "<unknown>"

type topOptions struct {
	*options
	selector   string
	output     string
	sortBy     string
	noHeaders  bool
	containers bool
}

func newTopCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top (nodes|pods)",
		Short: "Display the CPU and memory usage of nodes or pods, as their agents report it",
		Long: `Display the CPU and memory usage of nodes or pods, from the figures the agents
report every --usage-interval (15s by default). CPU is in millicores (250m is a
quarter of a core), memory in MiB. Wasm containers report memory only: their CPU
is shown as <unknown>. See docs/top.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErrorf(cmd, "you must specify nodes or pods: edgectl top nodes | edgectl top pods")
		},
	}
	cmd.AddCommand(newTopNodesCmd(o), newTopPodsCmd(o))
	return cmd
}

func (t *topOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&t.selector, "selector", "l", "", "label selector, e.g. app=hello,tier!=db")
	f.StringVarP(&t.output, "output", "o", "", "output format: json (the metrics.k8s.io/v1beta1 objects); default a table")
	f.StringVar(&t.sortBy, "sort-by", "", "sort by cpu or memory (largest first); default by name")
	f.BoolVar(&t.noHeaders, "no-headers", false, "print no header line")
}

// check checks the flags and arguments common to both verbs.
func (t *topOptions) check(cmd *cobra.Command, args []string) (name string, err error) {
	if len(args) > 1 {
		return "", usageErrorf(cmd, "at most one NAME, got %d", len(args))
	}
	if len(args) == 1 {
		name = args[0]
	}
	if name != "" && t.selector != "" {
		return "", usageErrorf(cmd, "only one of NAME or --selector can be provided")
	}
	if t.selector != "" {
		if _, err := manifests.ParseSelector(t.selector); err != nil {
			return "", usageErrorf(cmd, "-l %q: %v", t.selector, err)
		}
	}
	if t.output != "" && t.output != "json" {
		return "", usageErrorf(cmd, "--output %q: top prints a table or json", t.output)
	}
	if t.sortBy != "" && t.sortBy != "cpu" && t.sortBy != "memory" {
		return "", usageErrorf(cmd, "--sort-by %q: want cpu or memory", t.sortBy)
	}
	return name, nil
}

func newTopNodesCmd(o *options) *cobra.Command {
	t := &topOptions{options: o}
	cmd := &cobra.Command{
		Use:     "nodes [NAME | -l SELECTOR]",
		Aliases: []string{"node", "no"},
		Short:   "Display the CPU and memory usage of nodes",
		Example: `  edgectl top nodes
  edgectl top node edge-17
  edgectl top nodes -l site=lab --sort-by=memory`,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := t.check(cmd, args)
			if err != nil {
				return err
			}
			return t.runNodes(cmd.Context(), name)
		},
	}
	t.flags(cmd)
	return cmd
}

func newTopPodsCmd(o *options) *cobra.Command {
	t := &topOptions{options: o}
	cmd := &cobra.Command{
		Use:     "pods [NAME | -l SELECTOR]",
		Aliases: []string{"pod", "po"},
		Short:   "Display the CPU and memory usage of pods",
		Example: `  edgectl top pods
  edgectl top pod web-5d8f7c9b4-x2kq9 --containers
  edgectl top pods -A -l app=web --sort-by=cpu`,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := t.check(cmd, args)
			if err != nil {
				return err
			}
			if name != "" && t.allNamespaces {
				return usageErrorf(cmd, "a pod NAME cannot be used with -A")
			}
			return t.runPods(cmd.Context(), name)
		},
	}
	t.flags(cmd)
	cmd.Flags().BoolVar(&t.containers, "containers", false, "one line per container")
	return cmd
}

func (t *topOptions) top(ctx context.Context, req client.TopRequest) (client.TopResult, *client.Client, error) {
	cl, err := t.client(ctx)
	if err != nil {
		return client.TopResult{}, nil, err
	}
	rctx, cancel := t.reqCtx(ctx)
	defer cancel()
	res, err := cl.Top(rctx, req)
	return res, cl, err
}

func (t *topOptions) runNodes(ctx context.Context, name string) error {
	res, cl, err := t.top(ctx, client.TopRequest{Resource: "nodes", Name: name, LabelSelector: t.selector})
	if err != nil {
		return err
	}
	if res.Selected == 0 {
		fmt.Fprintln(t.streams.ErrOut, "No resources found")
		return nil
	}
	if len(res.Nodes) == 0 {
		return errMetricsNotAvailable
	}
	if t.output == "json" {
		return printMetrics(t, "NodeMetricsList", res.Nodes, name != "")
	}
	// The nodes, for the percentages of what they can allocate.
	rctx, cancel := t.reqCtx(ctx)
	defer cancel()
	var nodes []manifests.Object
	if name != "" {
		obj, err := cl.Get(rctx, "nodes", "", name)
		if err != nil {
			return err
		}
		nodes = []manifests.Object{obj}
	} else if nodes, _, err = cl.List(rctx, "nodes", "", t.selector); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	byName := map[string]client.NodeMetrics{}
	for _, m := range res.Nodes {
		byName[m.Metadata.Name] = m
	}
	type row struct {
		cells     []string
		cpu, mem  int64
		name      string
		hasFigure bool
	}
	var rows []row
	for _, obj := range nodes {
		n, ok := obj.(*manifests.Node)
		if !ok {
			continue
		}
		m, ok := byName[n.Name]
		if !ok {
			rows = append(rows, row{cells: []string{n.Name, unknown, unknown, unknown, unknown}, name: n.Name, cpu: -1, mem: -1})
			continue
		}
		r := row{name: n.Name, hasFigure: true, cpu: -1}
		alloc := n.Status.Allocatable
		cpuCell, cpuPct := unknown, unknown
		if q, ok := m.Usage[client.ResourceCPU]; ok {
			r.cpu = nanoOf(q)
			cpuCell = milliCores(r.cpu)
			cpuPct = percent((r.cpu+999_999)/1_000_000, alloc[client.ResourceCPU].MilliValue())
		}
		r.mem = m.Usage[client.ResourceMemory].Value()
		r.cells = []string{n.Name, cpuCell, cpuPct, mebibytes(r.mem), percent(r.mem, alloc[client.ResourceMemory].Value())}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		switch t.sortBy {
		case "cpu":
			return cmp.Or(cmp.Compare(b.cpu, a.cpu), cmp.Compare(a.name, b.name))
		case "memory":
			return cmp.Or(cmp.Compare(b.mem, a.mem), cmp.Compare(a.name, b.name))
		}
		return cmp.Compare(a.name, b.name)
	})
	tw := newTabWriter(t.streams.Out)
	if !t.noHeaders {
		fmt.Fprintln(tw, "NAME\tCPU(cores)\tCPU%\tMEMORY(bytes)\tMEMORY%")
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells, "\t"))
	}
	return tw.Flush()
}

func (t *topOptions) runPods(ctx context.Context, name string) error {
	ns := t.namespace
	if t.allNamespaces {
		ns = ""
	}
	res, _, err := t.top(ctx, client.TopRequest{Resource: "pods", Namespace: ns, Name: name, LabelSelector: t.selector})
	if err != nil {
		return err
	}
	if res.Selected == 0 {
		if t.allNamespaces {
			fmt.Fprintln(t.streams.ErrOut, "No resources found")
		} else {
			fmt.Fprintf(t.streams.ErrOut, "No resources found in %s namespace.\n", t.namespace)
		}
		return nil
	}
	if len(res.Pods) == 0 {
		if name != "" {
			return fmt.Errorf("%w for pod %s/%s", errMetricsNotAvailable, t.namespace, name)
		}
		return errMetricsNotAvailable
	}
	if t.output == "json" {
		return printMetrics(t, "PodMetricsList", res.Pods, name != "")
	}
	type row struct {
		ns, pod, ctr string
		cpu, mem     int64 // cpu -1: unknown
	}
	var rows []row
	for _, p := range res.Pods {
		sum := row{ns: p.Metadata.Namespace, pod: p.Metadata.Name, cpu: -1}
		for _, c := range p.Containers {
			r := row{ns: sum.ns, pod: sum.pod, ctr: c.Name, cpu: -1, mem: c.Usage[client.ResourceMemory].Value()}
			if q, ok := c.Usage[client.ResourceCPU]; ok {
				r.cpu = nanoOf(q)
				sum.cpu = max(sum.cpu, 0) + r.cpu
			}
			sum.mem += r.mem
			if t.containers {
				rows = append(rows, r)
			}
		}
		if !t.containers {
			rows = append(rows, sum)
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		byName := cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.pod, b.pod), cmp.Compare(a.ctr, b.ctr))
		switch t.sortBy {
		case "cpu":
			return cmp.Or(cmp.Compare(b.cpu, a.cpu), byName)
		case "memory":
			return cmp.Or(cmp.Compare(b.mem, a.mem), byName)
		}
		return byName
	})
	var header []string
	if t.allNamespaces {
		header = append(header, "NAMESPACE")
	}
	if t.containers {
		header = append(header, "POD")
	}
	header = append(header, "NAME", "CPU(cores)", "MEMORY(bytes)")
	tw := newTabWriter(t.streams.Out)
	if !t.noHeaders {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		var cells []string
		if t.allNamespaces {
			cells = append(cells, r.ns)
		}
		cells = append(cells, r.pod)
		if t.containers {
			cells = append(cells, r.ctr)
		}
		cpu := unknown
		if r.cpu >= 0 {
			cpu = milliCores(r.cpu)
		}
		cells = append(cells, cpu, mebibytes(r.mem))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// printMetrics prints the metrics objects as JSON: the one object when a
// NAME was given, else a list of kind listKind.
func printMetrics[T any](t *topOptions, listKind string, items []T, single bool) error {
	var v any = map[string]any{"apiVersion": client.MetricsAPIVersion, "kind": listKind, "metadata": map[string]any{}, "items": items}
	if single && len(items) == 1 {
		v = items[0]
	}
	data, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return fmt.Errorf("encode metrics: %w", err)
	}
	_, err = fmt.Fprintf(t.streams.Out, "%s\n", data)
	return err
}

// nanoOf returns a CPU quantity in nanocores.
func nanoOf(q manifests.Quantity) int64 {
	if s, ok := strings.CutSuffix(string(q), "n"); ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return q.MilliValue() * 1e6
}

// milliCores renders nanocores as kubectl does: whole millicores, rounded up.
func milliCores(nano int64) string {
	return fmt.Sprintf("%dm", (nano+999_999)/1_000_000)
}

// mebibytes renders bytes as kubectl does: whole MiB, rounded down.
func mebibytes(b int64) string { return fmt.Sprintf("%dMi", b/(1<<20)) }

// percent is use of total in whole percent, or <unknown> without a total.
func percent(use, total int64) string {
	if total <= 0 {
		return unknown
	}
	return fmt.Sprintf("%d%%", use*100/total)
}
