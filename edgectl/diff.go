package edgectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

// Exit codes of edgectl diff, as kubectl's: no differences, differences,
// failure.
const (
	diffExitSame   = 0
	diffExitDiffer = 1
	diffExitError  = 2
)

// diffContextLines is the number of unchanged lines around each change.
const diffContextLines = 3

// codedError ends edgectl with code after printing err (nothing for
// errReported).
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) ExitCode() int { return e.code }

type diffOptions struct {
	*options
	files       []string
	recursive   bool
	showSecrets bool
}

func newDiffCmd(o *options) *cobra.Command {
	d := &diffOptions{options: o}
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR|-",
		Short: "Show what apply would change, as a unified diff",
		Long: `Diff the live objects against what 'edgectl apply -f' would store: the same
merge and defaults (asked of the control plane with a server-side dry run; done
locally when the credentials may not apply). status, resourceVersion, uid,
creationTimestamp and generation are left out. A new object is diffed against
nothing. The values of Secrets are hidden unless --show-secrets.

Exit status: 0 no differences, 1 differences, 2 (or more) an error.`,
		Example: `  edgectl diff -f app.yaml
  edgectl diff -f manifests/ -R
  cat pod.yaml | edgectl diff -f -`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &codedError{diffExitError, usageErrorf(cmd, "unexpected arguments %q; give manifests with -f", args)}
			}
			if len(d.files) == 0 {
				return &codedError{diffExitError, usageErrorf(cmd, "must specify one of -f")}
			}
			differ, err := d.run(cmd.Context())
			if err != nil {
				return &codedError{diffExitError, err}
			}
			if differ {
				return &codedError{diffExitDiffer, errReported}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &codedError{diffExitError, &usageError{cmd: c.CommandPath(), err: err}}
	})
	f := cmd.Flags()
	f.StringArrayVarP(&d.files, "filename", "f", nil, "manifest file, directory or - for stdin (repeatable)")
	f.BoolVarP(&d.recursive, "recursive", "R", false, "read directories recursively")
	f.BoolVar(&d.showSecrets, "show-secrets", false, "show the values of Secrets in the diff")
	return cmd
}

// run prints the diff of every object and reports whether any differs.
// A failing object is reported and the others still diffed; the result
// is then an error.
func (d *diffOptions) run(ctx context.Context) (bool, error) {
	srcs, err := readSources(d.streams.In, d.files, d.recursive)
	if err != nil {
		return false, err
	}
	objs, err := decodeSources(srcs)
	if err != nil {
		return false, err
	}
	if len(objs) == 0 {
		return false, errors.New("no objects passed to diff")
	}
	if err := resolveNamespaces(objs, d.namespace, d.nsExplicit()); err != nil {
		return false, err
	}
	if err := validateObjects(objs); err != nil {
		return false, err
	}
	for _, so := range objs {
		if so.Object.GetObjectMeta().Name == "" {
			return false, fmt.Errorf("%s: %s: cannot diff an object without metadata.name", so.Source, so.Object.GetTypeMeta().Kind)
		}
	}
	cl, err := d.client(ctx)
	if err != nil {
		return false, err
	}
	differ, failed := false, false
	for _, so := range objs {
		live, merged, err := d.pair(ctx, cl, so)
		if err != nil {
			d.reportError(err)
			failed = true
			continue
		}
		name := diffName(so.Object)
		liveText, mergedText, err := diffTexts(live, merged, d.showSecrets)
		if err != nil {
			d.reportError(fmt.Errorf("%s: %w", name, err))
			failed = true
			continue
		}
		if liveText == mergedText {
			continue
		}
		differ = true
		writeUnifiedDiff(d.streams.Out, "live/"+name, "merged/"+name, splitLines(liveText), splitLines(mergedText))
	}
	if failed {
		return differ, errReported
	}
	return differ, nil
}

// pairAttempts bounds the reads of a pair whose live object changed
// between its read and the dry run (a controller writing it).
const pairAttempts = 3

// pair returns the live object (nil when it does not exist) and the one
// apply would store, both of the same revision of the live object.
func (d *diffOptions) pair(ctx context.Context, cl *client.Client, so sourceObject) (manifests.Object, manifests.Object, error) {
	for attempt := 1; ; attempt++ {
		live, merged, err := d.pairOnce(ctx, cl, so)
		if err != nil || attempt == pairAttempts || merged == nil {
			return live, merged, err
		}
		rv := merged.GetObjectMeta().ResourceVersion
		if (live == nil && rv == "") || (live != nil && live.GetObjectMeta().ResourceVersion == rv) {
			return live, merged, nil
		}
	}
}

func (d *diffOptions) pairOnce(ctx context.Context, cl *client.Client, so sourceObject) (manifests.Object, manifests.Object, error) {
	k := kindOf(so.Object)
	meta := so.Object.GetObjectMeta()
	rctx, cancel := d.reqCtx(ctx)
	live, err := cl.Get(rctx, k.Resource, meta.Namespace, meta.Name)
	cancel()
	if client.IsNotFound(err) {
		live, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	raw, err := json.Marshal(so.Object)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: encode %s: %w", so.Source, objectName(so.Object), err)
	}
	rctx, cancel = d.reqCtx(ctx)
	_, merged, err := cl.ApplyRaw(rctx, raw, true)
	cancel()
	switch {
	case err == nil:
		return live, merged, nil
	// Credentials that may only read, or a new object in a namespace the
	// same files create: merge here as the server would.
	case client.CodeOf(err) == client.CodeForbidden, live == nil && client.IsNotFound(err):
		merged, err := mergeForDiff(live, so.Object)
		return live, merged, err
	}
	return nil, nil, err
}

// mergeForDiff is the API server's apply merge (controlplane/api
// mergeApply), for when it cannot be asked: the stored object with the
// incoming labels, annotations, owner references and top-level fields but
// metadata and status; a pod keeps its node, a node its pod CIDR; then
// defaults.
func mergeForDiff(live, in manifests.Object) (manifests.Object, error) {
	if live == nil {
		obj := manifests.DeepCopy(in)
		manifests.Default(obj)
		if p, ok := obj.(*manifests.Pod); ok {
			p.Status = manifests.PodStatus{Phase: "Pending"}
		}
		return obj, nil
	}
	lm, err := objectMap(live)
	if err != nil {
		return nil, err
	}
	im, err := objectMap(in)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for key, v := range im {
		if key != "metadata" && key != "status" {
			out[key] = v
		}
	}
	if v, ok := lm["status"]; ok {
		out["status"] = v
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("merge %s: %w", objectName(in), err)
	}
	merged, err := manifests.FromJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("merge %s: %w", objectName(in), err)
	}
	m, sm, inm := merged.GetObjectMeta(), live.GetObjectMeta(), in.GetObjectMeta()
	*m = *sm
	m.Labels, m.OwnerReferences = inm.Labels, inm.OwnerReferences
	// Annotations the controllers keep (a Deployment's revision) stay.
	ann, cloned := inm.Annotations, false
	for key, v := range sm.Annotations {
		if _, set := inm.Annotations[key]; set || !strings.HasPrefix(key, "deployment.kubernetes.io/") {
			continue
		}
		if !cloned {
			ann, cloned = make(map[string]string, len(inm.Annotations)+1), true
			maps.Copy(ann, inm.Annotations)
		}
		ann[key] = v
	}
	m.Annotations = ann
	if p, ok := merged.(*manifests.Pod); ok && p.Spec.NodeName == "" {
		p.Spec.NodeName = live.(*manifests.Pod).Spec.NodeName
	}
	if n, ok := merged.(*manifests.Node); ok && n.Spec.PodCIDR == "" {
		ln := live.(*manifests.Node)
		n.Spec.PodCIDR, n.Spec.PodCIDRs = ln.Spec.PodCIDR, ln.Spec.PodCIDRs
	}
	manifests.Default(merged)
	return merged, nil
}

// objectMap is obj as generic JSON.
func objectMap(obj manifests.Object) (map[string]any, error) {
	if err := manifests.SetKind(obj); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", objectName(obj), err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", objectName(obj), err)
	}
	return m, nil
}

// diffName names an object in diff headers as kubectl does:
// apps.v1.Deployment.default.web, v1.Pod.default.hello, v1.Node.n1.
func diffName(obj manifests.Object) string {
	k := kindOf(obj)
	gv := strings.ReplaceAll(k.APIVersion, "/", ".")
	meta := obj.GetObjectMeta()
	if meta.Namespace == "" {
		return fmt.Sprintf("%s.%s.%s", gv, k.Kind, meta.Name)
	}
	return fmt.Sprintf("%s.%s.%s.%s", gv, k.Kind, meta.Namespace, meta.Name)
}

// diffIgnoredMeta are the metadata fields the diff leaves out: the
// server's bookkeeping, which apply never changes on purpose.
var diffIgnoredMeta = []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"}

// diffTexts renders both sides as YAML without status and bookkeeping,
// Secret values masked unless showSecrets; a nil object is empty text.
func diffTexts(live, merged manifests.Object, showSecrets bool) (string, string, error) {
	var docs [2]map[string]any
	for i, obj := range []manifests.Object{live, merged} {
		if obj == nil {
			continue
		}
		m, err := objectMap(obj)
		if err != nil {
			return "", "", err
		}
		delete(m, "status")
		if meta, ok := m["metadata"].(map[string]any); ok {
			for _, f := range diffIgnoredMeta {
				delete(meta, f)
			}
		}
		docs[i] = m
	}
	if !showSecrets {
		if _, ok := merged.(*manifests.Secret); ok {
			maskSecretValues(docs[0], docs[1])
		}
	}
	var texts [2]string
	for i, m := range docs {
		if m == nil {
			continue
		}
		raw, err := json.Marshal(m)
		if err != nil {
			return "", "", err
		}
		y, err := jsonToYAML(raw)
		if err != nil {
			return "", "", err
		}
		texts[i] = string(y)
	}
	return texts[0], texts[1], nil
}

// maskSecretValues replaces the values of data and stringData with "***"
// on both sides; a value that differs becomes "*** (before)" and
// "*** (after)", so that the diff shows which keys change but not how.
func maskSecretValues(before, after map[string]any) {
	for _, field := range []string{"data", "stringData"} {
		b, _ := fieldMap(before, field)
		a, _ := fieldMap(after, field)
		for key, bv := range b {
			av, inAfter := a[key]
			if inAfter && fmt.Sprint(av) != fmt.Sprint(bv) {
				b[key], a[key] = "*** (before)", "*** (after)"
				continue
			}
			b[key] = "***"
			if inAfter {
				a[key] = "***"
			}
		}
		for key := range a {
			if _, inBefore := b[key]; !inBefore {
				a[key] = "***"
			}
		}
	}
}

func fieldMap(m map[string]any, field string) (map[string]any, bool) {
	if m == nil {
		return nil, false
	}
	f, ok := m[field].(map[string]any)
	return f, ok
}

// splitLines splits text into lines without their newlines.
func splitLines(text string) []string {
	if text == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// editOp is one line of an edit script.
type editOp struct {
	kind byte // ' ', '-' or '+'
	line string
}

// lineDiff returns the shortest edit script turning a into b (Myers'
// O(ND) algorithm), as equal, deleted and inserted lines in order.
func lineDiff(a, b []string) []editOp {
	n, m := len(a), len(b)
	maxD := n + m
	offset := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int
	found := false
	for dist := 0; dist <= maxD && !found; dist++ {
		snapshot := make([]int, len(v))
		copy(snapshot, v)
		trace = append(trace, snapshot)
		for k := -dist; k <= dist; k += 2 {
			var x int
			if k == -dist || (k != dist && v[offset+k-1] < v[offset+k+1]) {
				x = v[offset+k+1] // down: insertion
			} else {
				x = v[offset+k-1] + 1 // right: deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[offset+k] = x
			if x >= n && y >= m {
				found = true
				break
			}
		}
	}
	// Walk back through the saved frontiers.
	var ops []editOp
	x, y := n, m
	for dist := len(trace) - 1; dist >= 0; dist-- {
		vd := trace[dist]
		k := x - y
		var prevK int
		if k == -dist || (k != dist && vd[offset+k-1] < vd[offset+k+1]) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := vd[offset+prevK]
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			ops = append(ops, editOp{' ', a[x-1]})
			x, y = x-1, y-1
		}
		if dist == 0 {
			break
		}
		if x == prevX {
			ops = append(ops, editOp{'+', b[y-1]})
		} else {
			ops = append(ops, editOp{'-', a[x-1]})
		}
		x, y = prevX, prevY
	}
	for x > 0 && y > 0 { // the leading snake of dist 0
		ops = append(ops, editOp{' ', a[x-1]})
		x, y = x-1, y-1
	}
	for i, j := 0, len(ops)-1; i < j; i, j = i+1, j-1 {
		ops[i], ops[j] = ops[j], ops[i]
	}
	return ops
}

// writeUnifiedDiff writes the unified diff of a and b (diff -u -N), with
// diffContextLines lines of context; nothing when they are equal.
func writeUnifiedDiff(w io.Writer, nameA, nameB string, a, b []string) {
	ops := lineDiff(a, b)
	changed := false
	for _, op := range ops {
		changed = changed || op.kind != ' '
	}
	if !changed {
		return
	}
	fmt.Fprintf(w, "diff -u -N %s %s\n--- %s\n+++ %s\n", nameA, nameB, nameA, nameB)
	// Positions (0-based) in a and b before each op.
	posA, posB := make([]int, len(ops)+1), make([]int, len(ops)+1)
	for i, op := range ops {
		posA[i+1], posB[i+1] = posA[i], posB[i]
		if op.kind != '+' {
			posA[i+1]++
		}
		if op.kind != '-' {
			posB[i+1]++
		}
	}
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		// A hunk: from diffContextLines before this change to
		// diffContextLines after the last change closer than twice that.
		start := max(0, i-diffContextLines)
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j + 1
				continue
			}
			if j-end >= 2*diffContextLines {
				break
			}
		}
		end = min(len(ops), end+diffContextLines)
		countA, countB := 0, 0
		for _, op := range ops[start:end] {
			if op.kind != '+' {
				countA++
			}
			if op.kind != '-' {
				countB++
			}
		}
		fmt.Fprintf(w, "@@ -%s +%s @@\n", hunkRange(posA[start], countA), hunkRange(posB[start], countB))
		for _, op := range ops[start:end] {
			fmt.Fprintf(w, "%c%s\n", op.kind, op.line)
		}
		i = end
	}
}

// hunkRange is a unified diff range: 1-based start, count omitted when 1;
// an empty range starts at the line before it.
func hunkRange(start0, count int) string {
	switch count {
	case 0:
		return fmt.Sprintf("%d,0", start0)
	case 1:
		return fmt.Sprintf("%d", start0+1)
	}
	return fmt.Sprintf("%d,%d", start0+1, count)
}
