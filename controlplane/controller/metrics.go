package controller

import (
	"reflect"
	goruntime "runtime"
	"strings"
	"sync"

	"github.com/edgeorch/edgeorch/metrics"
)

// Reconcile loop figures, in metrics.Default (docs/metrics.md).
var (
	reconcileDuration = metrics.NewHistogramVec("edge_controller_reconcile_duration_seconds",
		"Time taken by one sync of one key, by controller (failed syncs included).", metrics.DefBuckets, "controller")
	reconcileErrors = metrics.NewCounterVec("edge_controller_reconcile_errors_total",
		"Syncs that failed and were queued again with backoff, by controller (retries asked with ErrRetry are not errors).", "controller")
	reconcileRetries = metrics.NewCounterVec("edge_controller_reconcile_retries_total",
		"Syncs that asked to be retried later (ErrRetry: waiting for something), by controller.", "controller")
	queueDepth = metrics.NewGaugeFuncVec("edge_controller_queue_depth",
		"Keys waiting in the work queue, by controller.", []string{"controller"}, func(emit func(float64, ...string)) {
			queuesMu.Lock()
			defer queuesMu.Unlock()
			for q, name := range queues {
				emit(float64(q.Len()), name)
			}
		})

	queuesMu sync.Mutex
	queues   = map[*Queue]string{} // the queues of running RunWorkers
)

func init() {
	metrics.Default.MustRegister(reconcileDuration, reconcileErrors, reconcileRetries, queueDepth)
}

// loopMetrics are a controller's pre-resolved series.
type loopMetrics struct {
	duration        *metrics.Histogram
	errors, retries *metrics.Counter
}

func newLoopMetrics(name string) loopMetrics {
	return loopMetrics{
		duration: reconcileDuration.With(name),
		errors:   reconcileErrors.With(name),
		retries:  reconcileRetries.With(name),
	}
}

// trackQueue counts q's depth under name until the returned func is called.
func trackQueue(q *Queue, name string) func() {
	queuesMu.Lock()
	queues[q] = name
	queuesMu.Unlock()
	return func() {
		queuesMu.Lock()
		delete(queues, q)
		queuesMu.Unlock()
	}
}

// controllerName names the controller of a sync function after its
// package: "github.com/edgeorch/edgeorch/controlplane/daemonset.(*Controller).Sync-fm"
// is "daemonset".
func controllerName(f SyncFunc) string {
	fn := goruntime.FuncForPC(reflect.ValueOf(f).Pointer())
	if fn == nil {
		return "unknown"
	}
	name := fn.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		name = name[:i]
	}
	if name == "" {
		return "unknown"
	}
	return name
}
