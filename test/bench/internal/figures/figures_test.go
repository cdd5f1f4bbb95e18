package figures

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRecordAppendsAndParses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "figs")
	t.Setenv(Env, path)
	t.Setenv(HarnessEnv, "test/bench")
	Record(WasmApplyMedian, 12.345, "ms", "< 10 ms")
	Record(RawKVPuts, 2136, "/s", "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	figs, err := Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := []Figure{{WasmApplyMedian, 12.345, "ms", "< 10 ms", "test/bench"}, {RawKVPuts, 2136, "/s", "", "test/bench"}}
	if len(figs) != len(want) {
		t.Fatalf("parsed %d figures, want %d: %+v", len(figs), len(want), figs)
	}
	for i := range want {
		if figs[i] != want[i] {
			t.Errorf("figure %d = %+v, want %+v", i, figs[i], want[i])
		}
	}
}

func TestParseRejectsBadLines(t *testing.T) {
	for _, in := range []string{"a\t1\tms", "a\tx\tms\t", "a\t1\tms\t\th\textra"} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("Parse(%q) = %v, want an error naming line 1", in, err)
		}
	}
}

func TestLineRoundTrip(t *testing.T) {
	for _, f := range []Figure{
		{AgentRSSIdle, 14.5, "MiB", "< 15 MiB", ""},
		{RawRuncMedian, 39.9, "ms", "", ""},
		{Bind1000, 1234, "pods/s", ">= 1000 pods/s", ""},
	} {
		got, ok := ParseLine(f.Line())
		if !ok || got != f {
			t.Errorf("ParseLine(%q) = %+v, %v; want %+v", f.Line(), got, ok, f)
		}
	}
	for _, l := range []string{"", "# binaries", "edgectl   9.5 MB", "BenchmarkX  100  5 ns/op", "x  y ms  (goal < 1 ms)"} {
		if f, ok := ParseLine(l); ok {
			t.Errorf("ParseLine(%q) = %+v, want not a figure", l, f)
		}
	}
}

func TestMet(t *testing.T) {
	for _, c := range []struct {
		f             Figure
		met, has, bad bool
	}{
		{Figure{Value: 9, Unit: "ms", Goal: "< 10 ms"}, true, true, false},
		{Figure{Value: 10, Unit: "ms", Goal: "< 10 ms"}, false, true, false},
		{Figure{Value: 10, Unit: "ms", Goal: "<= 10 ms"}, true, true, false},
		{Figure{Value: 0.4, Unit: "s", Goal: "< 500 ms"}, true, true, false},
		{Figure{Value: 600, Unit: "ms", Goal: "< 0.5 s"}, false, true, false},
		{Figure{Value: 900, Unit: "MiB", Goal: "< 1 GiB"}, true, true, false},
		{Figure{Value: 1200, Unit: "pods/s", Goal: ">= 1,000 pods/s"}, true, true, false},
		{Figure{Value: 2.3, Unit: "x", Goal: "<= 2 x"}, false, true, false},
		{Figure{Value: 1, Unit: "ms"}, false, false, false},
		{Figure{Value: 0.4, Unit: "s", Goal: "< 0.5 s; median of 5"}, true, true, false},
		{Figure{Value: 12, Unit: "ms", Goal: "≤ 10ms median"}, false, false, true},
		{Figure{Value: 12, Unit: "ms", Goal: "≤ 10ms"}, false, true, false},
		{Figure{Value: 1200, Unit: "/s", Goal: "≥ 1,000 /s"}, true, true, false},
		{Figure{Value: 1, Unit: "ms", Goal: "fast"}, false, false, true},
		{Figure{Value: 1, Unit: "ms", Goal: "< 1 MiB"}, false, false, true},
	} {
		met, has, err := c.f.Met()
		if met != c.met || has != c.has || (err != nil) != c.bad {
			t.Errorf("%+v.Met() = %v, %v, %v; want %v, %v, error %v", c.f, met, has, err, c.met, c.has, c.bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := time.Millisecond
	d := []time.Duration{5 * ms, 1 * ms, 4 * ms, 2 * ms, 3 * ms}
	for _, c := range []struct {
		p    int
		want time.Duration
	}{{50, 3 * ms}, {99, 5 * ms}, {100, 5 * ms}, {1, 1 * ms}, {20, 1 * ms}, {21, 2 * ms}} {
		if got := Percentile(d, c.p); got != c.want {
			t.Errorf("Percentile(p%d) = %s, want %s", c.p, got, c.want)
		}
	}
	if d[0] != 5*ms {
		t.Error("Percentile sorted its argument")
	}
	if got := Percentile([]time.Duration{1234567}, 50); got != 1230*time.Microsecond {
		t.Errorf("rounding: %s", got)
	}
	if Percentile(nil, 50) != 0 {
		t.Error("no samples not 0")
	}
}
