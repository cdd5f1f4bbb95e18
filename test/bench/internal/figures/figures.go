// Package figures is the contract between the benchmark harnesses under
// test/bench/ and the summary that `make bench` prints at the end.
//
// A harness calls Record for every figure it measures. Record prints one
// line on standard output,
//
//	name  value unit  (goal < 10 ms)
//
// and, when the environment variable EDGE_BENCH_OUT names a file, appends
// the figure to it as one tab-separated line: name, value, unit, goal and
// the harness that measured it (EDGE_BENCH_HARNESS, which `make bench` sets;
// may be empty). The summary (go run ./test/bench/summary) reads that file
// and prints a table "figure | value | goal | met?".
//
// A goal is an operator, a number and a unit ("< 10 ms", "<= 2 x",
// ">= 1000 pods/s", "< 15 MiB"); the summary decides "met?" by comparing
// the value with it, converting between time units (ns, us, µs, ms, s) and
// between size units (KiB, MiB, GiB, kB, MB, GB). An empty goal means the
// figure is a reference (raw wazero, raw runc, raw KV puts): it is printed
// as "(goal -)" and the summary shows no verdict.
//
// The names of the figures issue 8 asks for are the constants below: use
// them, so that the summary can say which of them no harness produced.
package figures

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Env names the file Record appends figures to.
const Env = "EDGE_BENCH_OUT"

// HarnessEnv names the harness recording figures, for the summary.
const HarnessEnv = "EDGE_BENCH_HARNESS"

// The figures issue 8 lists, with their goals on the project's 2-core
// machine. Harnesses record them under these names. Bind1000 and
// Bind10000 are pending pods (no node fits them until every node gets the
// label they select: label → all bound), the scheduler inside the real
// control plane apart from the ReplicaSet's pace; DeploymentBind1000 and
// DeploymentBind10000 are a Deployment's apply → all bound (the
// ReplicaSet creating the pods, then the scheduler).
const (
	WasmApplyMedian      = "wasm pod apply->Running median"
	WasmApplyP99         = "wasm pod apply->Running p99"
	RawWazeroMedian      = "raw wazero instantiate+run median"
	RawWazeroP99         = "raw wazero instantiate+run p99"
	OCIApplyMedian       = "container pod apply->Running median"
	OCIApplyP99          = "container pod apply->Running p99"
	RawRuncMedian        = "raw runc run -d median"
	RawRuncP99           = "raw runc run -d p99"
	OCIOverRaw           = "container pod / raw runc (medians)"
	Bind1000             = "pods scheduled+bound/s, 1,000 pending pods" // label the nodes → all bound
	Bind10000            = "pods scheduled+bound/s, 10,000 pending pods"
	DeploymentBind1000   = "Deployment of 1,000: apply->all bound pods/s" // ReplicaSet pace + scheduler
	DeploymentBind10000  = "Deployment of 10,000: apply->all bound pods/s"
	EdgectlApply1000     = "edgectl apply of 1,000 objects"
	APIWrites            = "API writes/s, sync on, 1 writer"
	RawKVPuts            = "raw KV puts/s, sync on, 1 writer"
	ControlPlaneRSSIdle  = "control plane RSS idle"
	ControlPlaneRSS50    = "control plane RSS, 50 wasm pods"
	ControlPlanePSSIdle  = "control plane PSS idle"
	ControlPlanePSS50    = "control plane PSS, 50 wasm pods"
	AgentRSSIdle         = "agent RSS idle"
	AgentRSS50           = "agent RSS, 50 wasm pods"
	AgentPSSIdle         = "agent PSS idle"
	AgentPSS50           = "agent PSS, 50 wasm pods"
	SizeEdgectl          = "binary edgectl (stripped)"
	SizeControlPlane     = "binary edge-controlplane (stripped)"
	SizeAgent            = "binary edge-agent (stripped)"
	ControlPlanePeak10kN = "control plane peak RSS, 10,000 simulated nodes"
)

// Figure is one measured value.
type Figure struct {
	Name  string
	Value float64
	Unit  string
	Goal  string // "" for a reference figure
	// Harness that measured it ("" when unknown); not part of the
	// printed line.
	Harness string
}

// Issue8 lists the figures issue 8 asks for, with their goals ("" for
// the references measured in the same run), in the order the summary
// prints them.
var Issue8 = []Figure{
	{Name: WasmApplyMedian, Unit: "ms", Goal: "< 10 ms"},
	{Name: WasmApplyP99, Unit: "ms"},
	{Name: RawWazeroMedian, Unit: "ms"},
	{Name: RawWazeroP99, Unit: "ms"},
	{Name: OCIApplyMedian, Unit: "ms"},
	{Name: OCIApplyP99, Unit: "ms"},
	{Name: RawRuncMedian, Unit: "ms"},
	{Name: RawRuncP99, Unit: "ms"},
	{Name: OCIOverRaw, Unit: "x", Goal: "<= 2 x"},
	{Name: Bind1000, Unit: "pods/s", Goal: ">= 1000 pods/s"},
	{Name: Bind10000, Unit: "pods/s", Goal: ">= 1000 pods/s"},
	{Name: DeploymentBind1000, Unit: "pods/s"},
	{Name: DeploymentBind10000, Unit: "pods/s"},
	{Name: EdgectlApply1000, Unit: "s", Goal: "< 0.5 s"},
	{Name: APIWrites, Unit: "/s"},
	{Name: RawKVPuts, Unit: "/s"},
	{Name: ControlPlaneRSSIdle, Unit: "MiB", Goal: "< 40 MiB"},
	{Name: ControlPlaneRSS50, Unit: "MiB"},
	{Name: AgentRSSIdle, Unit: "MiB", Goal: "< 15 MiB"},
	{Name: AgentRSS50, Unit: "MiB", Goal: "< 30 MiB"},
	{Name: SizeEdgectl, Unit: "MB"},
	{Name: SizeControlPlane, Unit: "MB"},
	{Name: SizeAgent, Unit: "MB", Goal: "< 20 MB"},
	{Name: ControlPlanePeak10kN, Unit: "MiB", Goal: "< 1 GiB"},
}

var mu sync.Mutex

// Record prints the figure on standard output as "name  value unit  (goal
// ...)" and appends it to the file named by EDGE_BENCH_OUT, if set. A
// failure to append is reported on standard error: the figure is still
// printed.
func Record(name string, value float64, unit, goal string) {
	mu.Lock()
	defer mu.Unlock()
	f := Figure{Name: name, Value: value, Unit: unit, Goal: goal, Harness: os.Getenv(HarnessEnv)}
	fmt.Println(f.Line())
	path := os.Getenv(Env)
	if path == "" {
		return
	}
	if err := appendTo(path, f); err != nil {
		fmt.Fprintf(os.Stderr, "figures: append %q to %s: %v\n", name, path, err)
	}
}

// Duration records d in milliseconds.
func Duration(name string, d time.Duration, goal string) {
	Record(name, float64(d)/float64(time.Millisecond), "ms", goal)
}

// Percentile is the p-th percentile (nearest rank, 0 < p <= 100) of d,
// rounded to 10 µs; 0 for no samples. d is not changed.
func Percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(10 * time.Microsecond)
}

// MiB records a size given in KiB (as /proc reports it) in MiB.
func MiB(name string, kib int, goal string) {
	Record(name, float64(kib)/1024, "MiB", goal)
}

func appendTo(path string, f Figure) error {
	for _, s := range []string{f.Name, f.Unit, f.Goal, f.Harness} {
		if strings.ContainsAny(s, "\t\n") {
			return fmt.Errorf("tab or newline in %q", s)
		}
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\t%s\t%s\t%s\t%s\n", f.Name, strconv.FormatFloat(f.Value, 'g', -1, 64), f.Unit, f.Goal, f.Harness)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Line is the figure as a harness prints it.
func (f Figure) Line() string {
	goal := f.Goal
	if goal == "" {
		goal = "-"
	}
	return fmt.Sprintf("%s  %s %s  (goal %s)", f.Name, Format(f.Value), f.Unit, goal)
}

// Format prints v with three significant figures, without an exponent
// for the magnitudes benchmarks give.
func Format(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0 || a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// Parse reads the file Record appends to. Blank lines are skipped; any
// other line that is not four or five tab-separated fields (name, value,
// unit, goal, harness) with a number second is an error naming its line
// number.
func Parse(data string) ([]Figure, error) {
	var out []Figure
	for i, l := range strings.Split(data, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		p := strings.Split(l, "\t")
		if len(p) != 4 && len(p) != 5 {
			return nil, fmt.Errorf("line %d: want 4 or 5 tab-separated fields (name, value, unit, goal[, harness]), got %d", i+1, len(p))
		}
		v, err := strconv.ParseFloat(p[1], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value %q: not a number", i+1, p[1])
		}
		f := Figure{Name: p[0], Value: v, Unit: p[2], Goal: p[3]}
		if len(p) == 5 {
			f.Harness = p[4]
		}
		out = append(out, f)
	}
	return out, nil
}

// ParseLine reads a line in the printed form "name  value unit  (goal
// ...)", for harnesses that print figures without calling Record. ok is
// false for any other line.
func ParseLine(l string) (f Figure, ok bool) {
	l = strings.TrimSpace(l)
	i := strings.LastIndex(l, "  (goal ")
	if i < 0 || !strings.HasSuffix(l, ")") {
		return Figure{}, false
	}
	goal := strings.TrimSpace(l[i+len("  (goal ") : len(l)-1])
	if goal == "-" {
		goal = ""
	}
	head := strings.TrimSpace(l[:i])
	j := strings.LastIndex(head, "  ")
	if j < 0 {
		return Figure{}, false
	}
	name := strings.TrimSpace(head[:j])
	vu := strings.Fields(head[j:])
	if name == "" || len(vu) == 0 || len(vu) > 2 {
		return Figure{}, false
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(vu[0], ",", ""), 64)
	if err != nil {
		return Figure{}, false
	}
	f = Figure{Name: name, Value: v, Goal: goal}
	if len(vu) == 2 {
		f.Unit = vu[1]
	}
	return f, true
}

// Met compares the figure with its goal. ok is false when there is no
// goal or it cannot be read (then met means nothing); an unreadable goal
// also returns an error saying why.
func (f Figure) Met() (met, ok bool, err error) {
	g := strings.TrimSpace(f.Goal)
	if i := strings.IndexByte(g, ';'); i >= 0 { // "< 0.5 s; median of 5": the rest is a note
		g = strings.TrimSpace(g[:i])
	}
	if g == "" {
		return false, false, nil
	}
	g = strings.NewReplacer("≤", "<=", "≥", ">=").Replace(g)
	op, rest := splitOp(g)
	if op == "" {
		return false, false, fmt.Errorf("goal %q: want an operator (<, <=, >, >=) first", f.Goal)
	}
	fs := strings.Fields(rest)
	if len(fs) == 1 { // "10ms": split the number from its unit
		if i := strings.IndexFunc(fs[0], func(r rune) bool { return !strings.ContainsRune("0123456789.,", r) }); i > 0 {
			fs = []string{fs[0][:i], fs[0][i:]}
		}
	}
	if len(fs) == 0 || len(fs) > 2 {
		return false, false, fmt.Errorf("goal %q: want a number and a unit after %s", f.Goal, op)
	}
	want, err := strconv.ParseFloat(strings.ReplaceAll(fs[0], ",", ""), 64)
	if err != nil {
		return false, false, fmt.Errorf("goal %q: %q is not a number", f.Goal, fs[0])
	}
	got := f.Value
	if len(fs) == 2 && fs[1] != f.Unit {
		gs, gok := scale[f.Unit]
		ws, wok := scale[fs[1]]
		if !gok || !wok || gs.dim != ws.dim {
			return false, false, fmt.Errorf("goal %q: unit %s does not compare with the figure's %s", f.Goal, fs[1], f.Unit)
		}
		got = got * gs.f / ws.f
	}
	switch op {
	case "<":
		return got < want, true, nil
	case "<=":
		return got <= want, true, nil
	case ">":
		return got > want, true, nil
	default:
		return got >= want, true, nil
	}
}

func splitOp(s string) (op, rest string) {
	for _, o := range []string{"<=", ">=", "<", ">"} {
		if strings.HasPrefix(s, o) {
			return o, s[len(o):]
		}
	}
	return "", s
}

type unit struct {
	dim string
	f   float64
}

var scale = map[string]unit{
	"ns": {"time", 1e-9}, "us": {"time", 1e-6}, "µs": {"time", 1e-6}, "ms": {"time", 1e-3}, "s": {"time", 1},
	"B": {"size", 1}, "KiB": {"size", 1 << 10}, "MiB": {"size", 1 << 20}, "GiB": {"size", 1 << 30},
	"kB": {"size", 1e3}, "MB": {"size", 1e6}, "GB": {"size", 1e9},
}
