// Package probe runs a container's liveness, readiness and startup probes
// with the kubelet's semantics: initialDelaySeconds, periodSeconds,
// timeoutSeconds, successThreshold and failureThreshold; the startup probe
// gates the other two; readiness is false until its first success; a
// liveness or startup probe failing past its threshold asks for the
// container to be restarted.
package probe

import (
	"context"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// Kubernetes defaults.
const (
	DefaultPeriodSeconds    = 10
	DefaultTimeoutSeconds   = 1
	DefaultSuccessThreshold = 1
	DefaultFailureThreshold = 3
)

// Kind is one of the three probes.
type Kind int

const (
	Liveness Kind = iota
	Readiness
	Startup
)

func (k Kind) String() string {
	switch k {
	case Liveness:
		return "Liveness"
	case Readiness:
		return "Readiness"
	}
	return "Startup"
}

// State is what the probes say of a container.
type State struct {
	// Ready is the readiness result: true without a readiness probe once
	// started, else false until the probe's first success.
	Ready bool
	// Started is false while a startup probe has not succeeded.
	Started bool
	// Kill is set when the liveness or startup probe failed
	// failureThreshold times in a row: the container must be restarted.
	Kill bool
	// KillProbe is the probe that asked for the kill.
	KillProbe *manifests.Probe
	// Message is why: "Liveness probe failed: HTTP probe failed with
	// statuscode: 500".
	Message string
}

// Prober runs the probes of one container instance.
type Prober struct {
	target Target
	notify func()
	// hasReadiness: without a readiness probe a started container is ready.
	hasReadiness bool
	cancel       context.CancelFunc
	wg           sync.WaitGroup

	mu sync.Mutex
	st State
	// started is closed when the startup probe succeeds.
	started chan struct{}
}

// Start begins probing a container that started at startedAt. notify (may
// be nil) is called, from another goroutine, whenever the state changes.
// Probing stops with ctx or Stop.
func Start(ctx context.Context, c *manifests.Container, t Target, startedAt time.Time, notify func()) *Prober {
	ctx, cancel := context.WithCancel(ctx)
	p := &Prober{target: t, notify: notify, hasReadiness: c.ReadinessProbe != nil, cancel: cancel, started: make(chan struct{})}
	p.st.Started = c.StartupProbe == nil
	p.st.Ready = c.ReadinessProbe == nil && p.st.Started
	if p.st.Started {
		close(p.started)
	}
	for _, k := range []struct {
		kind Kind
		spec *manifests.Probe
	}{{Startup, c.StartupProbe}, {Liveness, c.LivenessProbe}, {Readiness, c.ReadinessProbe}} {
		if k.spec == nil {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.loop(ctx, k.kind, k.spec, startedAt)
		}()
	}
	return p
}

// ContainerID is the container instance the prober probes.
func (p *Prober) ContainerID() string { return p.target.ContainerID }

// State returns the current results.
func (p *Prober) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Stop ends probing and waits for running probes to return.
func (p *Prober) Stop() {
	p.cancel()
	p.wg.Wait()
}

func (p *Prober) set(f func(st *State) bool) {
	p.mu.Lock()
	changed := f(&p.st)
	p.mu.Unlock()
	if changed && p.notify != nil {
		p.notify()
	}
}

// worker is the kubelet's per-probe worker state.
type worker struct {
	kind       Kind
	spec       *manifests.Probe
	lastResult bool
	resultRun  int
	onHold     bool
}

func (p *Prober) loop(ctx context.Context, kind Kind, spec *manifests.Probe, startedAt time.Time) {
	w := &worker{kind: kind, spec: spec}
	if kind != Startup {
		// The startup probe gates the others.
		select {
		case <-ctx.Done():
			return
		case <-p.started:
		}
	}
	if d := time.Duration(spec.InitialDelaySeconds)*time.Second - time.Since(startedAt); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	period := time.Duration(orDefault(spec.PeriodSeconds, DefaultPeriodSeconds)) * time.Second
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		if !p.probe(ctx, w) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe runs one attempt and applies the thresholds. It returns false when
// this probe is finished (startup succeeded, liveness or startup failed).
func (p *Prober) probe(ctx context.Context, w *worker) bool {
	timeout := time.Duration(orDefault(w.spec.TimeoutSeconds, DefaultTimeoutSeconds)) * time.Second
	pctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	err := p.target.run(pctx, w.spec)
	took := time.Since(start)
	if err != nil && pctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = timeoutError{err: err, timeout: timeout}
	}
	cancel()
	if ctx.Err() != nil {
		return false
	}
	if p.target.Observe != nil {
		p.target.Observe(w.kind, err == nil, took)
	}
	ok := err == nil
	if w.resultRun > 0 && w.lastResult == ok {
		w.resultRun++
	} else {
		w.lastResult, w.resultRun = ok, 1
	}
	success := DefaultSuccessThreshold
	if w.kind == Readiness {
		success = int(orDefault(w.spec.SuccessThreshold, DefaultSuccessThreshold))
	}
	failure := int(orDefault(w.spec.FailureThreshold, DefaultFailureThreshold))
	if (!ok && w.resultRun < failure) || (ok && w.resultRun < success) {
		return true
	}
	switch w.kind {
	case Readiness:
		p.set(func(st *State) bool {
			changed := st.Ready != ok
			st.Ready = ok
			return changed
		})
		return true
	case Startup:
		if ok {
			p.set(func(st *State) bool {
				st.Started = true
				st.Ready = st.Ready || !p.hasReadiness
				return true
			})
			close(p.started)
			return false
		}
	case Liveness:
		if ok {
			return true
		}
	}
	p.set(func(st *State) bool {
		if st.Kill {
			return false
		}
		st.Kill, st.KillProbe, st.Message = true, w.spec, w.kind.String()+" probe failed: "+err.Error()
		st.Ready = false
		return true
	})
	return false
}

type timeoutError struct {
	err     error
	timeout time.Duration
}

func (e timeoutError) Error() string {
	return "probe timed out after " + e.timeout.String() + ": " + e.err.Error()
}

func (e timeoutError) Unwrap() error { return e.err }

func orDefault(v, d int32) int32 {
	if v <= 0 {
		return d
	}
	return v
}
