package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/probe"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/metrics"
	"github.com/nats-io/nats.go"
)

// agentMetrics are the agent's Prometheus figures (docs/metrics.md),
// served on Config.MetricsListen. Its methods do nothing on a nil
// receiver. Pods and containers are counted from the workers at scrape
// time; starts and probes are counted as they happen.
type agentMetrics struct {
	reg *metrics.Registry

	starts        *metrics.CounterVec
	startFailures *metrics.CounterVec
	startDuration *metrics.HistogramVec
	// probes by kind (probe.Liveness...) and result (0 failure, 1 success),
	// resolved once.
	probes        [3][2]*metrics.Counter
	probeDuration [3]*metrics.Histogram
	lastHeartbeat *metrics.Gauge

	mu    sync.Mutex
	perRT map[string]*startSeries // by runtime handler
}

type startSeries struct {
	starts, failures *metrics.Counter
	duration         *metrics.Histogram
}

// startBuckets bound container start times: from 5 ms (a cached wasm
// module) to a minute (an OCI create on a slow SD card).
var startBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

var containerStates = []string{"waiting", "running", "terminated"}

func newAgentMetrics(a *Agent) *agentMetrics {
	m := &agentMetrics{reg: metrics.NewRegistry(), perRT: map[string]*startSeries{}}
	m.starts = metrics.NewCounterVec("edge_agent_container_starts_total", "Containers created and started, by runtime handler (oci, wasm, ...).", "runtime")
	m.startFailures = metrics.NewCounterVec("edge_agent_container_start_failures_total", "Containers the runtime failed to create or start, by runtime handler.", "runtime")
	m.startDuration = metrics.NewHistogramVec("edge_agent_container_start_duration_seconds",
		"Time the runtime took to create and start a container (image or module already at hand), by runtime handler.", startBuckets, "runtime")
	probes := metrics.NewCounterVec("edge_agent_probe_total", "Probe attempts, by probe type (liveness, readiness, startup) and result (success, failure).", "type", "result")
	probeDuration := metrics.NewHistogramVec("edge_agent_probe_duration_seconds", "Time one probe attempt took, by probe type.", metrics.DefBuckets, "type")
	for _, k := range []probe.Kind{probe.Liveness, probe.Readiness, probe.Startup} {
		typ := probeType(k)
		m.probes[k][0] = probes.With(typ, "failure")
		m.probes[k][1] = probes.With(typ, "success")
		m.probeDuration[k] = probeDuration.With(typ)
	}
	heartbeat := metrics.NewGaugeVec("edge_agent_last_heartbeat_timestamp_seconds", "Unix time of the last lease renewal the control plane acknowledged (0: none yet).")
	m.lastHeartbeat = heartbeat.With()
	m.reg.MustRegister(m.starts, m.startFailures, m.startDuration, probes, probeDuration, heartbeat,
		metrics.NewGaugeFuncVec("edge_agent_pods", "Pods this agent runs, by phase (as last reported).", []string{"phase"}, a.podsByPhase),
		metrics.NewGaugeFuncVec("edge_agent_containers", "Containers of this agent's pods, by runtime handler and state (waiting, running, terminated).", []string{"runtime", "state"}, a.containersByState),
		metrics.NewGaugeFunc("edge_agent_outbox_entries", "Pod statuses in the local outbox (written to disk, not yet acknowledged by the control plane).", func() float64 {
			return float64(a.st.outboxLen())
		}),
		metrics.NewGaugeFunc("edge_agent_status_pending", "Pod statuses waiting to be sent to the control plane.", func() float64 {
			return float64(a.st.pendingLen())
		}),
		metrics.NewGaugeFunc("edge_agent_connected", "1 while the agent is connected to NATS (the control plane), else 0.", func() float64 {
			if a.nc != nil && a.nc.Status() == nats.CONNECTED {
				return 1
			}
			return 0
		}),
	)
	m.reg.MustRegister(metrics.NewProcessCollectors()...)
	return m
}

func probeType(k probe.Kind) string {
	switch k {
	case probe.Liveness:
		return "liveness"
	case probe.Readiness:
		return "readiness"
	}
	return "startup"
}

func (m *agentMetrics) series(handler string) *startSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.perRT[handler]
	if s == nil {
		s = &startSeries{starts: m.starts.With(handler), failures: m.startFailures.With(handler), duration: m.startDuration.With(handler)}
		m.perRT[handler] = s
	}
	return s
}

// containerStarted counts a container started in d.
func (m *agentMetrics) containerStarted(handler string, d time.Duration) {
	if m == nil {
		return
	}
	s := m.series(handler)
	s.starts.Inc()
	s.duration.Observe(d.Seconds())
}

// containerStartFailed counts a container the runtime did not start.
func (m *agentMetrics) containerStartFailed(handler string) {
	if m == nil {
		return
	}
	m.series(handler).failures.Inc()
}

// observeProbe is probe.Target.Observe.
func (m *agentMetrics) observeProbe(kind probe.Kind, ok bool, d time.Duration) {
	if m == nil || kind < 0 || int(kind) >= len(m.probes) {
		return
	}
	r := 0
	if ok {
		r = 1
	}
	m.probes[kind][r].Inc()
	m.probeDuration[kind].Observe(d.Seconds())
}

// heartbeat records an acknowledged lease renewal.
func (m *agentMetrics) heartbeat(t time.Time) {
	if m == nil {
		return
	}
	m.lastHeartbeat.Set(float64(t.UnixNano()) / 1e9)
}

// workerList is the running workers (not those tearing down).
func (a *Agent) workerList() []*podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		out = append(out, w)
	}
	return out
}

var podPhases = []string{manifests.PodPending, manifests.PodRunning, manifests.PodSucceeded, manifests.PodFailed, manifests.PodUnknown}

func (a *Agent) podsByPhase(emit func(float64, ...string)) {
	for _, ph := range podPhases {
		emit(0, ph)
	}
	for _, w := range a.workerList() {
		w.mu.Lock()
		ph := ""
		if w.rec.Status != nil {
			ph = w.rec.Status.Phase
		}
		w.mu.Unlock()
		if ph == "" {
			ph = manifests.PodPending
		}
		emit(1, ph)
	}
}

func (a *Agent) containersByState(emit func(float64, ...string)) {
	for h := range a.cfg.Runtimes {
		for _, st := range containerStates {
			emit(0, h, st)
		}
	}
	for _, w := range a.workerList() {
		w.mu.Lock()
		pod, st := w.rec.Pod, w.rec.Status
		var statuses []manifests.ContainerStatus
		if st != nil {
			statuses = append(append(statuses, st.InitContainerStatuses...), st.ContainerStatuses...)
		}
		w.mu.Unlock()
		if pod == nil {
			continue
		}
		h := w.handler(pod)
		for _, cs := range statuses {
			switch {
			case cs.State.Running != nil:
				emit(1, h, "running")
			case cs.State.Terminated != nil:
				emit(1, h, "terminated")
			default:
				emit(1, h, "waiting")
			}
		}
	}
}

// outboxLen is the number of statuses in the outbox on disk.
func (q *statusQueue) outboxLen() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.onDisk)
}

// pendingLen is the number of statuses not sent yet.
func (q *statusQueue) pendingLen() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// metricsShutdownTimeout bounds the metrics server's shutdown.
const metricsShutdownTimeout = 2 * time.Second

// serveMetrics serves /metrics on Config.MetricsListen (no-op when
// empty) until ctx is done; stop waits for the server to be down.
func (a *Agent) serveMetrics(ctx context.Context) (stop func(), err error) {
	if a.cfg.MetricsListen == "" {
		return func() {}, nil
	}
	if _, port, err := net.SplitHostPort(a.cfg.MetricsListen); err != nil || port == "" {
		return nil, fmt.Errorf("metrics: --metrics-listen %q: want host:port, e.g. 127.0.0.1:9464", a.cfg.MetricsListen)
	}
	ln, err := net.Listen("tcp", a.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s (--metrics-listen): %w", a.cfg.MetricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(a.metrics.reg))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics: serve", "err", err)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-done
	}()
	url := "http://" + ln.Addr().String() + "/metrics"
	a.log.Info("metrics serving", "url", url)
	if a.cfg.MetricsReady != nil {
		a.cfg.MetricsReady(url)
	}
	return func() { cancel(); <-stopped }, nil
}
