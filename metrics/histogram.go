package metrics

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
)

// DefBuckets are the default upper bounds of histogram buckets, in
// seconds: from 5 ms to 10 s (Prometheus' defaults).
var DefBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Histogram counts observations in buckets and keeps their sum.
type Histogram struct {
	upper  []float64 // sorted upper bounds, without +Inf
	counts []atomic.Uint64
	inf    atomic.Uint64 // above the last bound
	count  atomic.Uint64
	sum    atomicFloat
}

func newHistogram(upper []float64) *Histogram {
	return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper))}
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	// Buckets are few: a linear scan beats a binary search.
	i := 0
	for i < len(h.upper) && v > h.upper[i] {
		i++
	}
	if i < len(h.upper) {
		h.counts[i].Add(1)
	} else {
		h.inf.Add(1)
	}
	h.sum.add(v)
	h.count.Add(1)
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// histSnapshot is a histogram at scrape time, with cumulative counts.
type histSnapshot struct {
	upper      []float64
	cumulative []uint64 // per upper bound
	count      uint64
	sum        float64
}

func (h *Histogram) snapshot() *histSnapshot {
	s := &histSnapshot{upper: h.upper, cumulative: make([]uint64, len(h.upper))}
	var acc uint64
	for i := range h.counts {
		acc += h.counts[i].Load()
		s.cumulative[i] = acc
	}
	acc += h.inf.Load()
	// Observations in flight may make count and the buckets disagree
	// by a few: +Inf is written as the larger, so it never falls below
	// a bucket.
	s.count = max(acc, h.count.Load())
	s.sum = h.sum.load()
	return s
}

// HistogramVec is a histogram family with labels.
type HistogramVec struct{ v *vec[Histogram] }

// NewHistogramVec returns a histogram family with the given bucket upper
// bounds (nil: DefBuckets; +Inf is implied) and label names (none: a
// single histogram, With()). Bounds must be increasing.
func NewHistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	if buckets == nil {
		buckets = DefBuckets
	}
	upper := slices.Clone(buckets)
	if n := len(upper); n > 0 && math.IsInf(upper[n-1], 1) {
		upper = upper[:n-1]
	}
	for i, b := range upper {
		if math.IsNaN(b) || (i > 0 && b <= upper[i-1]) {
			panic(fmt.Sprintf("metrics: %s: bucket bounds must increase: %v", name, buckets))
		}
	}
	return &HistogramVec{v: newVec(newDesc(name, help, typeHistogram, labels), func() *Histogram { return newHistogram(upper) })}
}

// With returns the histogram of these label values, creating it empty.
// Keep the result on hot paths.
func (h *HistogramVec) With(values ...string) *Histogram { return h.v.with(values) }

func (h *HistogramVec) desc() desc { return h.v.d }

func (h *HistogramVec) collect(emit func(sample)) {
	h.v.each(func(values []string, m *Histogram) { emit(sample{labelValues: values, hist: m.snapshot()}) })
}
