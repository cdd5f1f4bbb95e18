package metrics

import (
	"bytes"
	"os"
	rtmetrics "runtime/metrics"
	"strconv"
	"syscall"
)

// NewProcessCollectors returns the Go runtime and process families:
// goroutines, heap and memory obtained from the OS (runtime/metrics, which
// does not stop the world), the GC cycles and memory limit, and from /proc
// the resident and virtual memory, the open file descriptors and the CPU
// time. A figure that cannot be read (no /proc) is left out of the scrape.
// Default holds them already.
func NewProcessCollectors() []Collector {
	return []Collector{
		runtimeGauge("go_goroutines", "Number of goroutines that currently exist.", "/sched/goroutines:goroutines"),
		runtimeGauge("go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects (live and not yet swept).", "/memory/classes/heap/objects:bytes"),
		NewGaugeFuncVec("go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans.", nil, func(emit func(float64, ...string)) {
			s := readRuntime("/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes")
			if s != nil {
				emit(s[0] + s[1])
			}
		}),
		runtimeGauge("go_memstats_heap_released_bytes", "Bytes of heap memory returned to the OS.", "/memory/classes/heap/released:bytes"),
		runtimeGauge("go_memstats_sys_bytes", "Bytes of memory obtained from the OS by the Go runtime.", "/memory/classes/total:bytes"),
		runtimeGauge("go_gc_gomemlimit_bytes", "The Go runtime's soft memory limit (GOMEMLIMIT).", "/gc/gomemlimit:bytes"),
		&GaugeFunc{d: newDesc("go_gc_cycles_total", "Completed GC cycles.", typeCounter, nil), f: func(emit func(float64, ...string)) {
			if s := readRuntime("/gc/cycles/total:gc-cycles"); s != nil {
				emit(s[0])
			}
		}},
		NewGaugeFuncVec("process_resident_memory_bytes", "Resident memory size in bytes (/proc/self/statm).", nil, func(emit func(float64, ...string)) {
			if _, rss, ok := statm(); ok {
				emit(rss)
			}
		}),
		NewGaugeFuncVec("process_virtual_memory_bytes", "Virtual memory size in bytes (/proc/self/statm).", nil, func(emit func(float64, ...string)) {
			if vsz, _, ok := statm(); ok {
				emit(vsz)
			}
		}),
		NewGaugeFuncVec("process_open_fds", "Number of open file descriptors.", nil, func(emit func(float64, ...string)) {
			if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
				emit(float64(len(ents)))
			}
		}),
		&GaugeFunc{d: newDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", typeCounter, nil), f: func(emit func(float64, ...string)) {
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
				emit(tvSeconds(ru.Utime) + tvSeconds(ru.Stime))
			}
		}},
	}
}

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

func runtimeGauge(name, help, rtName string) *GaugeFunc {
	return NewGaugeFuncVec(name, help, nil, func(emit func(float64, ...string)) {
		if s := readRuntime(rtName); s != nil {
			emit(s[0])
		}
	})
}

// readRuntime reads runtime/metrics samples as floats; nil if one is not
// supported by this Go version.
func readRuntime(names ...string) []float64 {
	samples := make([]rtmetrics.Sample, len(names))
	for i, n := range names {
		samples[i].Name = n
	}
	rtmetrics.Read(samples)
	out := make([]float64, len(samples))
	for i, s := range samples {
		switch s.Value.Kind() {
		case rtmetrics.KindUint64:
			out[i] = float64(s.Value.Uint64())
		case rtmetrics.KindFloat64:
			out[i] = s.Value.Float64()
		default:
			return nil
		}
	}
	return out
}

// statm returns the virtual and resident sizes in bytes.
func statm() (vsz, rss float64, ok bool) {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, false
	}
	f := bytes.Fields(data)
	if len(f) < 2 {
		return 0, 0, false
	}
	v, err1 := strconv.ParseUint(string(f[0]), 10, 64)
	r, err2 := strconv.ParseUint(string(f[1]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	page := float64(os.Getpagesize())
	return float64(v) * page, float64(r) * page, true
}
