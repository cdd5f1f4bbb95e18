// Package metrics is a small Prometheus instrumentation library: counters,
// gauges and histograms (with labels), gauges computed at scrape time, and
// a Registry that writes the Prometheus text exposition format (version
// 0.0.4) with an http.Handler to serve it.
//
// It exists so that the agent binary, which runs on boards with 128 MB of
// RAM, does not carry prometheus/client_golang and its dependencies (see
// docs/metrics.md). Observations are atomic adds on
// pre-resolved children: callers that observe on a hot path resolve the
// child of their label values once (CounterVec.With) and keep it.
package metrics

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Metric types, as written on the TYPE line.
const (
	typeCounter   = "counter"
	typeGauge     = "gauge"
	typeHistogram = "histogram"
)

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// desc is what a metric family says of itself.
type desc struct {
	name   string
	help   string
	typ    string
	labels []string
}

func newDesc(name, help, typ string, labels []string) desc {
	if !metricNameRE.MatchString(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	seen := map[string]bool{}
	for _, l := range labels {
		switch {
		case !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__"):
			panic(fmt.Sprintf("metrics: %s: invalid label name %q", name, l))
		case l == "le" && typ == typeHistogram:
			panic(fmt.Sprintf("metrics: %s: label name \"le\" is reserved in a histogram", name))
		case seen[l]:
			panic(fmt.Sprintf("metrics: %s: label name %q twice", name, l))
		}
		seen[l] = true
	}
	return desc{name: name, help: help, typ: typ, labels: slices.Clone(labels)}
}

// Collector is a metric family a Registry can write. The types of this
// package are the only implementations.
type Collector interface {
	desc() desc
	// collect calls emit for every sample of the family.
	collect(emit func(s sample))
}

// sample is one series of a family at scrape time.
type sample struct {
	labelValues []string
	value       float64
	hist        *histSnapshot // set for histograms
}

// atomicFloat is a float64 updated atomically.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) load() float64 { return math.Float64frombits(f.bits.Load()) }

func (f *atomicFloat) store(v float64) { f.bits.Store(math.Float64bits(v)) }

func (f *atomicFloat) add(v float64) {
	for {
		old := f.bits.Load()
		if f.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Counter is a value that only goes up.
type Counter struct{ v atomicFloat }

// Inc adds one.
func (c *Counter) Inc() { c.v.add(1) }

// Add adds v, which must not be negative (a negative v is ignored).
func (c *Counter) Add(v float64) {
	if v < 0 || math.IsNaN(v) {
		return
	}
	c.v.add(v)
}

// Value is the current count.
func (c *Counter) Value() float64 { return c.v.load() }

// Gauge is a value that goes up and down.
type Gauge struct{ v atomicFloat }

// Set sets the value.
func (g *Gauge) Set(v float64) { g.v.store(v) }

// Add adds v (which may be negative).
func (g *Gauge) Add(v float64) { g.v.add(v) }

// Inc adds one.
func (g *Gauge) Inc() { g.v.add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.add(-1) }

// Value is the current value.
func (g *Gauge) Value() float64 { return g.v.load() }

// vec holds the children of a labelled family, by label values.
type vec[T any] struct {
	d        desc
	newChild func() *T

	mu       sync.RWMutex
	children map[string]*child[T]
}

type child[T any] struct {
	values []string
	m      *T
}

// key joins label values with a byte no valid UTF-8 text contains.
func key(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		return values[0]
	}
	return strings.Join(values, "\xff")
}

func (v *vec[T]) with(values []string) *T {
	if len(values) != len(v.d.labels) {
		panic(fmt.Sprintf("metrics: %s: %d label values for labels %v", v.d.name, len(values), v.d.labels))
	}
	k := key(values)
	v.mu.RLock()
	c := v.children[k]
	v.mu.RUnlock()
	if c != nil {
		return c.m
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c = v.children[k]; c == nil {
		c = &child[T]{values: slices.Clone(values), m: v.newChild()}
		v.children[k] = c
	}
	return c.m
}

// each calls f for every child, in the order of their label values.
func (v *vec[T]) each(f func(values []string, m *T)) {
	v.mu.RLock()
	cs := make([]*child[T], 0, len(v.children))
	for _, c := range v.children {
		cs = append(cs, c)
	}
	v.mu.RUnlock()
	slices.SortFunc(cs, func(a, b *child[T]) int { return slices.Compare(a.values, b.values) })
	for _, c := range cs {
		f(c.values, c.m)
	}
}

// newVec returns an empty family; one without labels gets its only
// series at once, so that it is written (at zero) before any observation.
func newVec[T any](d desc, newChild func() *T) *vec[T] {
	v := &vec[T]{d: d, newChild: newChild, children: map[string]*child[T]{}}
	if len(d.labels) == 0 {
		v.children[""] = &child[T]{m: newChild()}
	}
	return v
}

// CounterVec is a counter family with labels.
type CounterVec struct{ v *vec[Counter] }

// NewCounterVec returns a counter family with the given label names
// (none: a single counter, With()). Names are checked: an invalid one
// panics (it is a programming error).
func NewCounterVec(name, help string, labels ...string) *CounterVec {
	return &CounterVec{v: newVec(newDesc(name, help, typeCounter, labels), func() *Counter { return &Counter{} })}
}

// With returns the counter of these label values (in the order of the
// label names), creating it at zero. Keep the result on hot paths.
func (c *CounterVec) With(values ...string) *Counter { return c.v.with(values) }

func (c *CounterVec) desc() desc { return c.v.d }

func (c *CounterVec) collect(emit func(sample)) {
	c.v.each(func(values []string, m *Counter) { emit(sample{labelValues: values, value: m.Value()}) })
}

// GaugeVec is a gauge family with labels.
type GaugeVec struct{ v *vec[Gauge] }

// NewGaugeVec returns a gauge family with the given label names.
func NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	return &GaugeVec{v: newVec(newDesc(name, help, typeGauge, labels), func() *Gauge { return &Gauge{} })}
}

// With returns the gauge of these label values, creating it at zero.
func (g *GaugeVec) With(values ...string) *Gauge { return g.v.with(values) }

func (g *GaugeVec) desc() desc { return g.v.d }

func (g *GaugeVec) collect(emit func(sample)) {
	g.v.each(func(values []string, m *Gauge) { emit(sample{labelValues: values, value: m.Value()}) })
}

// GaugeFunc is a gauge family whose samples are computed at scrape time.
type GaugeFunc struct {
	d desc
	f func(emit func(value float64, labelValues ...string))
}

// NewGaugeFunc returns a gauge without labels whose value f computes at
// every scrape. f runs on the scraping goroutine and must be quick.
func NewGaugeFunc(name, help string, f func() float64) *GaugeFunc {
	return &GaugeFunc{d: newDesc(name, help, typeGauge, nil), f: func(emit func(float64, ...string)) { emit(f()) }}
}

// NewGaugeFuncVec returns a gauge family with labels whose samples f emits
// at every scrape, one call of emit per series (label values in the order
// of labels). Series emitted twice are summed.
func NewGaugeFuncVec(name, help string, labels []string, f func(emit func(value float64, labelValues ...string))) *GaugeFunc {
	return &GaugeFunc{d: newDesc(name, help, typeGauge, labels), f: f}
}

// NewCounterFunc returns a counter without labels whose value f computes at
// every scrape (e.g. a total kept elsewhere).
func NewCounterFunc(name, help string, f func() float64) *GaugeFunc {
	return &GaugeFunc{d: newDesc(name, help, typeCounter, nil), f: func(emit func(float64, ...string)) { emit(f()) }}
}

func (g *GaugeFunc) desc() desc { return g.d }

func (g *GaugeFunc) collect(emit func(sample)) {
	byKey := map[string]*sample{}
	var order []*sample
	g.f(func(value float64, values ...string) {
		if len(values) != len(g.d.labels) {
			panic(fmt.Sprintf("metrics: %s: %d label values for labels %v", g.d.name, len(values), g.d.labels))
		}
		k := key(values)
		if s := byKey[k]; s != nil {
			s.value += value
			return
		}
		s := &sample{labelValues: slices.Clone(values), value: value}
		byKey[k] = s
		order = append(order, s)
	})
	slices.SortFunc(order, func(a, b *sample) int { return slices.Compare(a.labelValues, b.labelValues) })
	for _, s := range order {
		emit(*s)
	}
}
