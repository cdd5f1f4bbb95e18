package metrics_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/metrics"
	"github.com/edgeorch/edgeorch/metrics/metricstest"
)

func write(t *testing.T, regs ...*metrics.Registry) string {
	t.Helper()
	var buf bytes.Buffer
	if err := metrics.WriteText(&buf, regs...); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestTextFormat(t *testing.T) {
	r := metrics.NewRegistry()
	c := metrics.NewCounterVec("b_requests_total", "Requests.\nSecond line with a \\ backslash.", "verb", "code")
	g := metrics.NewGaugeVec("a_temperature", "Temperature.")
	h := metrics.NewHistogramVec("c_latency_seconds", "Latency.", []float64{0.1, 1}, "op")
	r.MustRegister(c, g, h)
	c.With("get", "OK").Add(3)
	c.With("apply", "Invalid").Inc()
	g.With().Set(-2.5)
	lat := h.With("sync")
	lat.Observe(0.05)
	lat.Observe(0.1) // on the bound: le is inclusive
	lat.Observe(0.5)
	lat.Observe(7)
	want := `# HELP a_temperature Temperature.
# TYPE a_temperature gauge
a_temperature -2.5
# HELP b_requests_total Requests.\nSecond line with a \\ backslash.
# TYPE b_requests_total counter
b_requests_total{verb="apply",code="Invalid"} 1
b_requests_total{verb="get",code="OK"} 3
# HELP c_latency_seconds Latency.
# TYPE c_latency_seconds histogram
c_latency_seconds_bucket{op="sync",le="0.1"} 2
c_latency_seconds_bucket{op="sync",le="1"} 3
c_latency_seconds_bucket{op="sync",le="+Inf"} 4
c_latency_seconds_sum{op="sync"} 7.65
c_latency_seconds_count{op="sync"} 4
`
	got := write(t, r)
	if got != want {
		t.Fatalf("text:\n%s\nwant:\n%s", got, want)
	}
	fams, err := metricstest.Parse([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	hist := fams["c_latency_seconds"].GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 4 || math.Abs(hist.GetSampleSum()-7.65) > 1e-9 || len(hist.GetBucket()) != 3 || hist.GetBucket()[0].GetCumulativeCount() != 2 {
		t.Fatalf("parsed histogram = %v", hist)
	}
	if v, ok := fams.Sample("b_requests_total", "verb", "get"); !ok || v != 3 {
		t.Fatalf("b_requests_total{verb=get} = %v, %v", v, ok)
	}
	// The output is stable: the same state writes the same bytes.
	if again := write(t, r); again != got {
		t.Fatalf("second write differs:\n%s", again)
	}
}

func TestLabelEscaping(t *testing.T) {
	r := metrics.NewRegistry()
	c := metrics.NewCounterVec("weird_total", "Weird label values.", "v")
	r.MustRegister(c)
	values := []string{`quote " here`, `back\slash`, "new\nline", "ünïcödé", ""}
	for i, v := range values {
		c.With(v).Add(float64(i + 1))
	}
	text := write(t, r)
	if !strings.Contains(text, `weird_total{v="quote \" here"} 1`) || !strings.Contains(text, `weird_total{v="back\\slash"} 2`) || !strings.Contains(text, `weird_total{v="new\nline"} 3`) {
		t.Fatalf("escaping:\n%s", text)
	}
	fams, err := metricstest.Parse([]byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	for i, v := range values {
		if got, ok := fams.Sample("weird_total", "v", v); !ok || got != float64(i+1) {
			t.Errorf("value of %q read back as %v (found %v)", v, got, ok)
		}
	}
}

func TestSpecialValues(t *testing.T) {
	r := metrics.NewRegistry()
	g := metrics.NewGaugeVec("g", "G.", "k")
	r.MustRegister(g)
	g.With("inf").Set(math.Inf(1))
	g.With("minf").Set(math.Inf(-1))
	g.With("nan").Set(math.NaN())
	g.With("big").Set(1e21)
	text := write(t, r)
	for _, want := range []string{`g{k="inf"} +Inf`, `g{k="minf"} -Inf`, `g{k="nan"} NaN`, `g{k="big"} 1e+21`} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
	if _, err := metricstest.Parse([]byte(text)); err != nil {
		t.Fatal(err)
	}
}

func TestCounterIgnoresNegative(t *testing.T) {
	c := metrics.NewCounterVec("c_total", "C.").With()
	c.Add(2)
	c.Add(-5)
	c.Add(math.NaN())
	if c.Value() != 2 {
		t.Fatalf("counter = %v, want 2", c.Value())
	}
}

func TestGaugeFuncs(t *testing.T) {
	r := metrics.NewRegistry()
	n := 0.0
	r.MustRegister(
		metrics.NewGaugeFunc("scrapes", "Scrapes so far.", func() float64 { n++; return n }),
		metrics.NewGaugeFuncVec("pods", "Pods by phase.", []string{"phase"}, func(emit func(float64, ...string)) {
			emit(1, "Running")
			emit(0, "Failed")
			emit(2, "Running") // summed
			emit(1, "Pending")
		}),
	)
	text := write(t, r)
	want := "# HELP pods Pods by phase.\n# TYPE pods gauge\npods{phase=\"Failed\"} 0\npods{phase=\"Pending\"} 1\npods{phase=\"Running\"} 3\n# HELP scrapes Scrapes so far.\n# TYPE scrapes gauge\nscrapes 1\n"
	if text != want {
		t.Fatalf("text:\n%s\nwant:\n%s", text, want)
	}
	if !strings.Contains(write(t, r), "scrapes 2\n") {
		t.Fatal("gauge func not computed again at the second scrape")
	}
}

func TestRegisterErrors(t *testing.T) {
	r := metrics.NewRegistry()
	a := metrics.NewCounterVec("x_total", "X.")
	if err := r.Register(a); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(metrics.NewGaugeVec("x_total", "again")); err == nil || !strings.Contains(err.Error(), "x_total") {
		t.Fatalf("duplicate name: err = %v", err)
	}
	other := metrics.NewRegistry()
	other.MustRegister(metrics.NewGaugeVec("x_total", "in another registry"))
	if err := metrics.WriteText(io.Discard, r, other); err == nil {
		t.Fatal("a family in two registries written together: no error")
	}
	r.Unregister(a)
	if err := r.Register(metrics.NewGaugeVec("x_total", "now free")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(){
		func() { metrics.NewCounterVec("1bad", "") },
		func() { metrics.NewCounterVec("ok", "", "bad-label") },
		func() { metrics.NewCounterVec("ok", "", "__reserved") },
		func() { metrics.NewCounterVec("ok", "", "a", "a") },
		func() { metrics.NewHistogramVec("ok", "", nil, "le") },
		func() { metrics.NewHistogramVec("ok", "", []float64{1, 1}) },
		func() { metrics.NewCounterVec("ok", "", "a").With("x", "y") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic on an invalid definition")
				}
			}()
			bad()
		}()
	}
}

func TestHistogramConcurrent(t *testing.T) {
	r := metrics.NewRegistry()
	hv := metrics.NewHistogramVec("h_seconds", "H.", nil, "w")
	r.MustRegister(hv)
	var wg sync.WaitGroup
	const workers, each = 8, 1000
	for i := range workers {
		wg.Go(func() {
			h := hv.With([]string{"even", "odd"}[i%2])
			for j := range each {
				h.Observe(float64(j) / 1000)
			}
		})
	}
	// Scrapes while observing must always parse.
	for range 20 {
		if _, err := metricstest.Parse([]byte(write(t, r))); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	fams, err := metricstest.Parse([]byte(write(t, r)))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := fams.Sample("h_seconds"); v != workers*each {
		t.Fatalf("count = %v, want %d", v, workers*each)
	}
	h := fams["h_seconds"].GetMetric()[0].GetHistogram()
	if got := h.GetBucket()[len(h.GetBucket())-2]; got.GetUpperBound() != 10 || got.GetCumulativeCount() != workers/2*each {
		t.Fatalf("last bucket = %v", got)
	}
}

func TestHandler(t *testing.T) {
	r := metrics.NewRegistry()
	r.MustRegister(metrics.NewCounterVec("hits_total", "Hits."))
	srv := httptest.NewServer(metrics.Handler(r, metrics.Default))
	defer srv.Close()
	fams, body, err := metricstest.Scrape(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hits_total", "go_goroutines", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := fams.Sample(name); !ok {
			t.Errorf("no %s in\n%s", name, body)
		}
	}
	if v, _ := fams.Sample("process_resident_memory_bytes"); v < 1<<20 {
		t.Errorf("process_resident_memory_bytes = %v, want at least 1 MiB", v)
	}
	if v, _ := fams.Sample("go_goroutines"); v < 1 {
		t.Errorf("go_goroutines = %v", v)
	}
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %s", resp.Status)
	}
}

func BenchmarkCounterInc(b *testing.B) {
	c := metrics.NewCounterVec("c_total", "C.", "k").With("v")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := metrics.NewHistogramVec("h_seconds", "H.", nil, "k").With("v")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(float64(i%1000) / 100)
	}
}

func BenchmarkWithLookup(b *testing.B) {
	hv := metrics.NewHistogramVec("h_seconds", "H.", nil, "verb", "code")
	hv.With("get", "OK")
	b.ReportAllocs()
	for b.Loop() {
		hv.With("get", "OK").Observe(0.01)
	}
}

// BenchmarkWriteText writes a registry of the control plane's shape: 11
// controllers, 20 verbs x 3 codes, the process figures.
func BenchmarkWriteText(b *testing.B) {
	r := metrics.NewRegistry()
	rec := metrics.NewHistogramVec("rec_seconds", "R.", nil, "controller")
	api := metrics.NewHistogramVec("api_seconds", "A.", nil, "verb", "code")
	r.MustRegister(rec, api)
	r.MustRegister(metrics.NewProcessCollectors()...)
	for i := range 11 {
		rec.With(fmt.Sprint("c", i)).Observe(0.01)
	}
	for i := range 20 {
		for _, c := range []string{"OK", "NotFound", "Conflict"} {
			api.With(fmt.Sprint("v", i), c).Observe(0.002)
		}
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := metrics.WriteText(&buf, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/scrape")
}
