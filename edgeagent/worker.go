package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/podnet"
	"github.com/edgeorch/edgeorch/edgeagent/podstatus"
	"github.com/edgeorch/edgeorch/edgeagent/probe"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

// Container log files are rotated like the kubelet's defaults.
const (
	logMaxBytes = 10 << 20
	logMaxFiles = 5
)

// Waiting reasons, as the kubelet reports them.
const (
	reasonCreating          = "ContainerCreating"
	reasonCrashLoop         = "CrashLoopBackOff"
	reasonErrImagePull      = "ErrImagePull"
	reasonImagePullBackOff  = "ImagePullBackOff"
	reasonConfigError       = "CreateContainerConfigError"
	reasonCreateError       = "CreateContainerError"
	reasonRunError          = "RunContainerError"
	reasonNoRuntimeHandler  = "RuntimeClassNotSupported"
	reasonSandboxError      = "CreatePodSandboxError"
	reasonNetworkNotReady   = "NetworkNotReady"
	reasonStartError        = "StartError"
	reasonDeadlineExceeded  = "DeadlineExceeded" // of the pod, past activeDeadlineSeconds
	defaultGracePeriodInSec = 30
)

// podWorker runs one pod: it keeps its containers as the spec and restart
// policy want them, computes the pod's status and tears the pod down when
// it is removed.
type podWorker struct {
	a *Agent

	mu       sync.Mutex
	rec      *state.Pod
	removing bool
	kick     chan struct{}
	// after, when set, is closed when an earlier worker of the same pod
	// (same state key) has finished tearing it down.
	after    <-chan struct{}
	finished chan struct{}

	// Owned by the run goroutine.
	pastDeadline bool // activeDeadlineSeconds passed: the pod failed
	ctrs         map[string]*ctr
	adopted      bool
	dirty        bool   // rec changed and must be stored
	podIP        string // the pod network address of the sandbox, if wired
	// resolving holds the module references being resolved ahead of the
	// containers' start, during one sync (resolveAhead).
	resolving map[string]chan resolvedRef
}

// resolvedRef is the outcome of resolving a module reference.
type resolvedRef struct {
	digest string
	err    error
}

// ctr is what a worker knows of one container.
type ctr struct {
	name         string
	id           string
	restartCount int32
	image        string // spec image the running container was made from
	digest       string
	last         *manifests.ContainerStateTerminated
	cur          manifests.ContainerState
	done         bool // exited and not restarted under the restart policy
	restartAt    time.Time
	retryAt      time.Time
	restarts     podstatus.Backoff
	failures     podstatus.Backoff
	pullFailed   bool
	startError   bool // the last instance failed to start; retryAt is its back-off
	prober       *probe.Prober
	probeKill    string        // why the probes killed the current instance
	probeGrace   time.Duration // the grace period of that kill
}

func newPodWorker(a *Agent, rec *state.Pod) *podWorker {
	if rec.Containers == nil {
		rec.Containers = map[string]state.Container{}
	}
	w := &podWorker{a: a, rec: rec, kick: make(chan struct{}, 1), ctrs: map[string]*ctr{}, finished: make(chan struct{}), dirty: true}
	for name, sc := range rec.Containers {
		c := w.newCtr(name)
		c.id, c.restartCount, c.image, c.digest, c.last = sc.ID, sc.RestartCount, sc.Image, sc.Digest, sc.LastState
		c.done, c.cur = sc.Terminated != nil, restoredState(sc.Terminated)
		w.ctrs[name] = c
	}
	return w
}

// restoredState is the state of a container read from the local state:
// finished for good, or about to be (re)started.
func restoredState(t *manifests.ContainerStateTerminated) manifests.ContainerState {
	if t != nil {
		return manifests.ContainerState{Terminated: t}
	}
	return waiting(reasonCreating, "")
}

func (w *podWorker) uid() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rec.Pod.UID
}

func (w *podWorker) stateKey() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rec.Key()
}

func (w *podWorker) revision() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rec.Revision
}

func (w *podWorker) pod() *manifests.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rec.Pod
}

// update takes a newer assignment of the same pod.
func (w *podWorker) update(pod *manifests.Pod, rev uint64) {
	w.mu.Lock()
	if rev <= w.rec.Revision {
		w.mu.Unlock()
		return
	}
	w.rec.Pod, w.rec.Revision = pod, rev
	w.mu.Unlock()
	w.poke()
}

// remove makes the worker tear the pod down and exit.
func (w *podWorker) remove() {
	w.mu.Lock()
	w.removing = true
	w.mu.Unlock()
	w.poke()
}

func (w *podWorker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *podWorker) isRemoving() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.removing
}

func (w *podWorker) run(ctx context.Context) {
	defer w.a.finished(w)
	if w.after != nil {
		select {
		case <-ctx.Done():
			return
		case <-w.after:
		}
	}
	t := time.NewTicker(w.a.cfg.PollInterval)
	defer t.Stop()
	for {
		if w.isRemoving() {
			w.teardown(ctx)
			return
		}
		w.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-t.C:
		}
	}
}

func (w *podWorker) handler(pod *manifests.Pod) string {
	if pod.Spec.RuntimeClassName != nil && *pod.Spec.RuntimeClassName != "" {
		return *pod.Spec.RuntimeClassName
	}
	return manifests.RuntimeOCI
}

// sync brings the pod one step closer to its spec and reports its status.
func (w *podWorker) sync(ctx context.Context) {
	pod := w.pod()
	handler := w.handler(pod)
	rt := w.a.cfg.Runtimes[handler]
	if rt == nil {
		names := make([]string, 0, len(w.a.cfg.Runtimes))
		for n := range w.a.cfg.Runtimes {
			names = append(names, n)
		}
		msg := fmt.Sprintf("runtime handler %q is not available on node %s (available: %v)", handler, w.a.cfg.NodeName, names)
		if handler == manifests.RuntimeOCI {
			msg = "runc not found: " + msg
		}
		for _, c := range pod.Spec.Containers {
			w.container(c.Name).cur = waiting(reasonNoRuntimeHandler, msg)
		}
		w.report(pod, handler)
		return
	}
	if !w.adopted {
		w.adopt(ctx, rt)
	}
	w.mu.Lock()
	if w.rec.StartTime.IsZero() {
		w.rec.StartTime = time.Now().UTC()
		w.dirty = true
	}
	sandbox := w.rec.SandboxID
	start := w.rec.StartTime
	w.mu.Unlock()
	if d := pod.Spec.ActiveDeadlineSeconds; d != nil && time.Since(start) >= time.Duration(*d)*time.Second && w.deadlineApplies() {
		w.deadlineExceeded(ctx, rt, pod, handler)
		w.report(pod, handler)
		return
	}
	nsr := w.podNetwork(rt)
	if nsr != nil && !w.a.pnet.Ready() {
		// As the kubelet: no sandbox before the node's network is.
		for _, c := range pod.Spec.Containers {
			if !w.container(c.Name).done {
				w.container(c.Name).cur = waiting(reasonNetworkNotReady, podnet.ErrNotReady.Error())
			}
		}
		w.report(pod, handler)
		return
	}
	if sandbox == "" {
		// The module lookups (control-plane round trips) run while the
		// sandbox and log directories are made.
		w.resolveAhead(ctx, handler, pod)
		defer clear(w.resolving) // never used by a later sync: stale
		id, err := w.runSandbox(ctx, rt, pod)
		if err != nil {
			for _, c := range pod.Spec.Containers {
				w.container(c.Name).cur = waiting(reasonSandboxError, err.Error())
			}
			w.report(pod, handler)
			return
		}
		w.mu.Lock()
		w.rec.SandboxID = id
		w.mu.Unlock()
		w.dirty = true
		sandbox = id
	}
	if nsr != nil && w.podIP == "" {
		if err := w.setupNetwork(ctx, nsr, sandbox); err != nil {
			for _, c := range pod.Spec.Containers {
				if !w.container(c.Name).done {
					w.container(c.Name).cur = waiting(reasonSandboxError, err.Error())
				}
			}
			w.report(pod, handler)
			return
		}
	}
	lost := false
	initialized := true
	// Init containers run one at a time, each to success, before the
	// app containers; they are restarted on failure unless the pod's
	// restart policy is Never.
	initPolicy := manifests.RestartOnFailure
	if pod.Spec.RestartPolicy == manifests.RestartNever {
		initPolicy = manifests.RestartNever
	}
	for i := range pod.Spec.InitContainers {
		spec := &pod.Spec.InitContainers[i]
		c := w.container(spec.Name)
		if c.done && c.cur.Terminated != nil && c.cur.Terminated.ExitCode == 0 {
			continue
		}
		lost = w.syncContainer(ctx, rt, pod, handler, sandbox, spec, initPolicy)
		if !(c.done && c.cur.Terminated != nil && c.cur.Terminated.ExitCode == 0) {
			initialized = false
			break
		}
	}
	for i := range pod.Spec.Containers {
		if lost {
			break
		}
		if !initialized {
			w.container(pod.Spec.Containers[i].Name).cur = waiting("PodInitializing", "")
			continue
		}
		lost = w.syncContainer(ctx, rt, pod, handler, sandbox, &pod.Spec.Containers[i], pod.Spec.RestartPolicy)
	}
	if lost {
		// The runtime forgot the sandbox: make a new one next round.
		w.teardownNetwork(sandbox)
		w.mu.Lock()
		w.rec.SandboxID = ""
		w.mu.Unlock()
		w.dirty = true
	}
	w.report(pod, handler)
}

// deadlineApplies reports whether activeDeadlineSeconds may still fail the
// pod: not once it has finished for another reason (Succeeded, or Failed
// by its containers), as the kubelet does not sync a terminal pod again.
// The deadline counts from the stored start time, so after an agent
// restart a pod past it fails at once, before any container starts again.
func (w *podWorker) deadlineApplies() bool {
	if w.pastDeadline {
		return true
	}
	w.mu.Lock()
	st := w.rec.Status
	w.mu.Unlock()
	if st == nil || (st.Phase != manifests.PodSucceeded && st.Phase != manifests.PodFailed) {
		return true
	}
	return st.Reason == reasonDeadlineExceeded
}

// deadlineExceeded stops every container of a pod that ran past its
// activeDeadlineSeconds; the pod fails with reason DeadlineExceeded.
func (w *podWorker) deadlineExceeded(ctx context.Context, rt runtime.Runtime, pod *manifests.Pod, handler string) {
	w.pastDeadline = true
	all := append(append([]manifests.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, spec := range all {
		c := w.container(spec.Name)
		if c.done {
			continue
		}
		c.done = true
		w.dirty = true
		c.stopProber()
		// A container not running (not started yet, or lost with the
		// runtime at an agent restart) is terminated too: the pod failed.
		term := &manifests.ContainerStateTerminated{ExitCode: 137, Reason: runtime.ReasonDeadlineExceeded, FinishedAt: time.Now().UTC().Truncate(time.Second)}
		if c.id != "" {
			if err := rt.StopContainer(ctx, c.id, gracePeriod(pod)); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				w.a.log.Warn("stop container past deadline", "pod", pod.Namespace+"/"+pod.Name, "container", spec.Name, "err", err)
			}
			if st, err := rt.ContainerStatus(ctx, c.id); err == nil && st.State == runtime.StateExited {
				term = terminated(handler, c.id, st)
			}
		}
		c.cur = manifests.ContainerState{Terminated: term}
	}
}

// adopt checks which recorded containers the runtime still knows. Those it
// forgot (all of them for wasm after a restart) are started again with
// their restart counts kept; a sandbox without any known container is
// made anew.
func (w *podWorker) adopt(ctx context.Context, rt runtime.Runtime) {
	w.adopted = true
	known := 0
	for _, c := range w.ctrs {
		if c.id == "" || c.done {
			continue
		}
		if _, err := rt.ContainerStatus(ctx, c.id); errors.Is(err, runtime.ErrNotFound) {
			c.id = ""
			w.dirty = true
			continue
		}
		known++
	}
	w.mu.Lock()
	sb := w.rec.SandboxID
	w.mu.Unlock()
	if sb != "" && known == 0 {
		rt.StopPodSandbox(ctx, sb)
		w.teardownNetwork(sb)
		rt.RemovePodSandbox(ctx, sb)
		w.mu.Lock()
		w.rec.SandboxID = ""
		w.mu.Unlock()
		w.dirty = true
	}
}

func (w *podWorker) runSandbox(ctx context.Context, rt runtime.Runtime, pod *manifests.Pod) (string, error) {
	dir := w.a.podDir(pod)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return "", fmt.Errorf("create pod dir: %w", err)
	}
	hostname := pod.Spec.Hostname
	if hostname == "" {
		hostname = pod.Name
	}
	id, err := rt.RunPodSandbox(ctx, runtime.PodSandboxConfig{
		Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, Labels: pod.Labels,
		LogDirectory: filepath.Join(dir, "logs"), Hostname: hostname,
		Dir: filepath.Join(dir, "sandbox"), DNS: w.sandboxDNS(rt, pod),
	})
	if err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	return id, nil
}

func (w *podWorker) container(name string) *ctr {
	c := w.ctrs[name]
	if c == nil {
		c = w.newCtr(name)
		w.ctrs[name] = c
	}
	return c
}

func (w *podWorker) newCtr(name string) *ctr {
	return &ctr{name: name, cur: waiting(reasonCreating, ""),
		restarts: podstatus.Backoff{Base: w.a.cfg.BackoffBase, Max: w.a.cfg.BackoffMax},
		failures: podstatus.Backoff{Base: w.a.cfg.BackoffBase, Max: w.a.cfg.BackoffMax}}
}

func waiting(reason, message string) manifests.ContainerState {
	return manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: reason, Message: message}}
}

func shouldRestart(policy string, exitCode int32) bool {
	switch policy {
	case manifests.RestartNever:
		return false
	case manifests.RestartOnFailure:
		return exitCode != 0
	}
	return true
}

// syncContainer looks at one container and starts, restarts or leaves it.
// It returns true when the runtime no longer knows the sandbox.
func (w *podWorker) syncContainer(ctx context.Context, rt runtime.Runtime, pod *manifests.Pod, handler, sandbox string, spec *manifests.Container, policy string) bool {
	c := w.container(spec.Name)
	if c.prober != nil && (c.done || c.prober.ContainerID() != c.id) {
		c.stopProber()
	}
	if c.done {
		return false
	}
	now := time.Now()
	if c.id != "" {
		st, err := rt.ContainerStatus(ctx, c.id)
		if err == nil && st.State != runtime.StateRunning {
			c.stopProber()
		}
		switch {
		case errors.Is(err, runtime.ErrNotFound):
			// Lost (the runtime restarted): start it again, same count.
			c.stopProber()
			c.probeKill = ""
			c.id = ""
			c.cur = waiting(reasonCreating, "")
			w.dirty = true
		case err != nil:
			w.a.log.Warn("container status", "pod", pod.Namespace+"/"+pod.Name, "container", spec.Name, "err", err)
			return false
		case (st.State == runtime.StateRunning || st.State == runtime.StateCreated) && c.image != spec.Image:
			w.replace(ctx, rt, pod, c, "image changed")
			c.cur = waiting(reasonCreating, "")
		case st.State == runtime.StateRunning || st.State == runtime.StateCreated:
			if st.State == runtime.StateCreated {
				if err := rt.StartContainer(ctx, c.id); err != nil && !errors.Is(err, runtime.ErrState) {
					c.cur = waiting(reasonRunError, err.Error())
				}
				return false
			}
			c.cur = manifests.ContainerState{Running: &manifests.ContainerStateRunning{StartedAt: st.StartedAt.UTC().Truncate(time.Second)}}
			w.probe(ctx, rt, pod, handler, sandbox, spec, c, st.StartedAt)
			return false
		case st.State == runtime.StateExited:
			term := terminated(handler, c.id, st)
			killed := c.probeKill != ""
			if killed {
				// Killed by a failing liveness or startup probe: the
				// kubelet reports it as an error and restarts it unless
				// the policy is Never.
				term.Reason, term.Message = runtime.ReasonError, c.probeKill
			}
			if !shouldRestart(policy, st.ExitCode) && !(killed && policy != manifests.RestartNever) {
				c.cur = manifests.ContainerState{Terminated: term}
				c.done = true
				w.dirty = true
				return false
			}
			if c.restartAt.IsZero() {
				ran := st.FinishedAt.Sub(st.StartedAt)
				finished := st.FinishedAt
				if finished.IsZero() {
					finished = now
				}
				c.restartAt = finished.Add(c.restarts.Next(ran))
			}
			if now.Before(c.restartAt) {
				c.last = term
				c.cur = waiting(reasonCrashLoop, fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
					c.restartAt.Sub(finishedOr(st.FinishedAt, now)).Round(time.Second), spec.Name, pod.Name, pod.Namespace, pod.UID))
				return false
			}
			if err := rt.RemoveContainer(ctx, c.id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				w.a.log.Warn("remove exited container", "container", c.id, "err", err)
			}
			c.last = term
			c.id = ""
			c.probeKill = ""
			c.restartCount++
			c.restartAt = time.Time{}
			w.dirty = true
		default:
			return false
		}
	}
	if c.done || c.id != "" {
		return false
	}
	if now.Before(c.retryAt) {
		if c.startError {
			c.cur = waiting(reasonCrashLoop, fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
				c.retryAt.Sub(now).Round(time.Second), spec.Name, pod.Name, pod.Namespace, pod.UID))
		}
		return false
	}
	if c.startError {
		// The failed instance counts as a run, as with the kubelet.
		c.restartCount++
		c.startError = false
		w.dirty = true
	}
	return w.start(ctx, rt, pod, handler, sandbox, spec, c, policy)
}

func finishedOr(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

func terminated(handler, id string, st runtime.ContainerStatus) *manifests.ContainerStateTerminated {
	reason := st.Reason
	if reason == "" {
		reason = runtime.ReasonCompleted
		if st.ExitCode != 0 {
			reason = runtime.ReasonError
		}
	}
	return &manifests.ContainerStateTerminated{
		ExitCode: st.ExitCode, Reason: reason, Message: st.Message,
		StartedAt: st.StartedAt.UTC().Truncate(time.Second), FinishedAt: st.FinishedAt.UTC().Truncate(time.Second),
		ContainerID: handler + "://" + id,
	}
}

// replace stops a running container whose spec changed; the next sync
// starts it from the new spec, counting a restart as the kubelet does.
func (w *podWorker) replace(ctx context.Context, rt runtime.Runtime, pod *manifests.Pod, c *ctr, why string) {
	w.a.log.Info("restarting container", "pod", pod.Namespace+"/"+pod.Name, "container", c.name, "why", why)
	c.stopProber()
	c.probeKill = ""
	rt.StopContainer(ctx, c.id, gracePeriod(pod))
	st, err := rt.ContainerStatus(ctx, c.id)
	if err == nil {
		c.last = terminated(w.handler(pod), c.id, st)
	}
	rt.RemoveContainer(ctx, c.id)
	c.id = ""
	c.restartCount++
	c.done = false
	c.restartAt = time.Time{}
	w.dirty = true
}

// start creates and starts a container. It returns true when the sandbox
// is gone.
func (w *podWorker) start(ctx context.Context, rt runtime.Runtime, pod *manifests.Pod, handler, sandbox string, spec *manifests.Container, c *ctr, policy string) bool {
	fail := func(reason string, err error) bool {
		msg := err.Error()
		if errors.Is(err, runtime.ErrUnavailable) && handler == manifests.RuntimeOCI && !strings.Contains(msg, "runc") {
			msg = "runc not found: " + msg
		}
		c.cur = waiting(reason, msg)
		c.retryAt = time.Now().Add(c.failures.Failure())
		return false
	}
	// The log directory first: it is made while a module lookup started
	// by resolveAhead is in flight.
	if err := os.MkdirAll(filepath.Dir(w.logPath(pod, spec.Name, c.restartCount)), 0o755); err != nil {
		return fail(reasonCreateError, fmt.Errorf("create log dir: %w", err))
	}
	image, err := w.image(ctx, handler, spec, c)
	if err != nil {
		reason := reasonErrImagePull
		if c.pullFailed {
			reason = reasonImagePullBackOff
		}
		c.pullFailed = true
		return fail(reason, err)
	}
	c.pullFailed = false
	cfg, err := w.containerConfig(ctx, pod, handler, spec, c, image)
	if err != nil {
		return fail(reasonConfigError, err)
	}
	startedAt := time.Now() // the start's duration, in the metrics
	id, err := rt.CreateContainer(ctx, sandbox, cfg)
	if errors.Is(err, runtime.ErrNotFound) {
		return true
	}
	if err != nil {
		w.a.metrics.containerStartFailed(handler)
	}
	if errors.Is(err, runtime.ErrInvalid) && handler == manifests.RuntimeOCI {
		// runc checks the command at create: a bad command is a start
		// error, as with the kubelet.
		w.startFailed(pod, spec, c, policy, err)
		return false
	}
	if err != nil {
		return fail(reasonCreateError, err)
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		w.a.metrics.containerStartFailed(handler)
		rt.RemoveContainer(ctx, id)
		if handler == manifests.RuntimeOCI {
			w.startFailed(pod, spec, c, policy, err)
			return false
		}
		return fail(reasonRunError, err)
	}
	w.a.metrics.containerStarted(handler, time.Since(startedAt))
	c.id = id
	c.image = spec.Image
	c.failures.Reset()
	c.startError = false
	c.cur = manifests.ContainerState{Running: &manifests.ContainerStateRunning{StartedAt: time.Now().UTC().Truncate(time.Second)}}
	w.dirty = true
	w.probe(ctx, rt, pod, handler, sandbox, spec, c, time.Now())
	return false
}

// startFailed records a container that could not start (bad command): it
// terminated with reason StartError, and is started again after a crash
// back-off when the restart policy allows.
func (w *podWorker) startFailed(pod *manifests.Pod, spec *manifests.Container, c *ctr, policy string, err error) {
	now := time.Now().UTC().Truncate(time.Second)
	term := &manifests.ContainerStateTerminated{ExitCode: 128, Reason: reasonStartError, Message: err.Error(), StartedAt: now, FinishedAt: now}
	w.dirty = true
	if !shouldRestart(policy, term.ExitCode) {
		c.cur = manifests.ContainerState{Terminated: term}
		c.done = true
		return
	}
	c.last = term
	c.cur = waiting(reasonRunError, err.Error())
	c.startError = true
	c.retryAt = time.Now().Add(c.restarts.Next(0))
	w.a.log.Info("container failed to start", "pod", pod.Namespace+"/"+pod.Name, "container", spec.Name, "err", err)
}

// image returns what the runtime runs: for oci the directory of the
// unpacked image (pulled under the pull policy); for wasm the path of the
// verified module, resolved from the image reference in the control plane
// or, for a reference naming a registry host, pulled from that registry as
// an OCI artifact. The digest is
// remembered so the pod starts again offline.
func (w *podWorker) image(ctx context.Context, handler string, spec *manifests.Container, c *ctr) (string, error) {
	switch {
	case w.a.cfg.PassImages:
		return spec.Image, nil
	case handler == manifests.RuntimeOCI:
		return w.ociImage(ctx, w.pod(), spec, c)
	case handler != manifests.RuntimeWasm:
		return spec.Image, nil
	case images.IsRegistryRef(spec.Image):
		return w.registryModule(ctx, w.pod(), spec, c)
	}
	digest := c.digest
	if d, ok := w.presentModule(spec, c); ok {
		digest = d
	} else if digest == "" || c.image != spec.Image || spec.ImagePullPolicy == "Always" {
		d, err := w.resolveModule(ctx, spec.Image)
		switch {
		case err == nil:
			digest = d
			w.a.mods.resolved(spec.Image, d)
		case digest != "" && c.image == spec.Image:
			// Offline: keep what we resolved before.
		default:
			return "", fmt.Errorf("resolve %s: %w", spec.Image, err)
		}
	}
	path, err := w.a.mods.ensure(ctx, digest)
	if err != nil {
		return "", err
	}
	if c.digest != digest {
		c.digest = digest
		w.dirty = true
	}
	return path, nil
}

// needsResolve reports whether image resolves the container's module
// reference in the control plane before it starts.
func (w *podWorker) needsResolve(handler string, spec *manifests.Container, c *ctr) bool {
	if w.a.cfg.PassImages || handler != manifests.RuntimeWasm || images.IsRegistryRef(spec.Image) {
		return false
	}
	if _, ok := w.presentModule(spec, c); ok {
		return false
	}
	return c.digest == "" || c.image != spec.Image || spec.ImagePullPolicy == "Always"
}

// presentModule returns the digest of a new container's module reference
// that this node resolved before and holds, when its pull policy lets the
// node use it without asking (not Always; IfNotPresent and Never) and no
// resolution of it is already under way.
func (w *podWorker) presentModule(spec *manifests.Container, c *ctr) (string, bool) {
	if spec.ImagePullPolicy == "Always" || (c.digest != "" && c.image == spec.Image) {
		return "", false
	}
	if _, ok := w.resolving[spec.Image]; ok {
		return "", false
	}
	return w.a.mods.present(spec.Image)
}

// resolveAhead starts resolving the module references of a new sandbox's
// containers, which this sync starts at once (a pod with init containers
// is left alone: its app containers start later, and must resolve then).
func (w *podWorker) resolveAhead(ctx context.Context, handler string, pod *manifests.Pod) {
	if len(pod.Spec.InitContainers) > 0 {
		return
	}
	for i := range pod.Spec.Containers {
		spec := &pod.Spec.Containers[i]
		c := w.container(spec.Name)
		if c.done || c.id != "" || time.Now().Before(c.retryAt) || !w.needsResolve(handler, spec, c) {
			continue
		}
		if _, ok := w.resolving[spec.Image]; ok {
			continue
		}
		if w.resolving == nil {
			w.resolving = map[string]chan resolvedRef{}
		}
		ch := make(chan resolvedRef, 1)
		w.resolving[spec.Image] = ch
		go func(ref string) {
			d, err := w.a.api.ResolveModule(ctx, ref)
			ch <- resolvedRef{d, err}
		}(spec.Image)
	}
}

// resolveModule returns the digest ref points at: the result of
// resolveAhead when it started one this sync, else asked now.
func (w *podWorker) resolveModule(ctx context.Context, ref string) (string, error) {
	if ch, ok := w.resolving[ref]; ok {
		delete(w.resolving, ref)
		select {
		case r := <-ch:
			return r.digest, r.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return w.a.api.ResolveModule(ctx, ref)
}

func gracePeriod(pod *manifests.Pod) time.Duration {
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return defaultGracePeriodInSec * time.Second
}

// logPath is the log file of a container's run number restart.
func (w *podWorker) logPath(pod *manifests.Pod, container string, restart int32) string {
	return filepath.Join(w.a.podDir(pod), "logs", container, strconv.Itoa(int(restart))+".log")
}

// report computes the pod status, stores the record when it changed and
// queues the status for the control plane.
func (w *podWorker) report(pod *manifests.Pod, handler string) {
	statuses := func(specs []manifests.Container) []manifests.ContainerStatus {
		var out []manifests.ContainerStatus
		for _, spec := range specs {
			c := w.container(spec.Name)
			cs := manifests.ContainerStatus{
				Name: spec.Name, Image: spec.Image, RestartCount: c.restartCount, State: c.cur,
			}
			if c.digest != "" {
				cs.ImageID = "sha256:" + c.digest
			}
			if c.id != "" {
				cs.ContainerID = handler + "://" + c.id
			}
			if c.last != nil {
				cs.LastTerminationState.Terminated = c.last
			}
			out = append(out, cs)
		}
		return out
	}
	w.mu.Lock()
	prev := w.rec.Status
	start := w.rec.StartTime
	w.mu.Unlock()
	st := podstatus.Compute(podstatus.Input{
		Pod: pod, InitContainers: statuses(pod.Spec.InitContainers), Containers: statuses(pod.Spec.Containers), HostIP: w.a.cfg.Address, PodIP: w.ip(), StartTime: start,
		Probes: w.probeResults(pod),
	}, prev, time.Now())
	if w.pastDeadline {
		st.Phase = manifests.PodFailed
		st.Reason = reasonDeadlineExceeded
		st.Message = "Pod was active on the node longer than the specified deadline"
	}
	changed := !podstatus.Equal(prev, &st)
	w.mu.Lock()
	for name, c := range w.ctrs {
		rc := state.Container{ID: c.id, RestartCount: c.restartCount, Image: c.image, Digest: c.digest, LastState: c.last}
		if c.done {
			rc.Terminated = c.cur.Terminated
		}
		if !w.rec.Containers[name].Equal(rc) {
			w.rec.Containers[name] = rc
			w.dirty = true
		}
	}
	if changed {
		w.rec.Status = &st
		w.dirty = true
	}
	var save *state.Pod
	if w.dirty {
		cp := *w.rec
		save = &cp
		w.dirty = false
	}
	w.mu.Unlock()
	// The status leaves first: the state write below waits for bbolt's
	// batch (up to its MaxBatchDelay, 10 ms) and an fsync, and nothing the
	// control plane is told depends on it (an agent restarted before the
	// write starts the pod again from its assignment).
	if changed {
		w.a.st.put(&manifests.Pod{
			TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: manifests.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Status:     st,
		})
	}
	if save != nil {
		if err := w.a.db.PutPod(save); err != nil {
			w.a.log.Error("store pod state", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			w.dirty = true
		}
	}
}

// teardown stops and removes the pod's containers and sandbox, then its
// directory and state.
func (w *podWorker) teardown(ctx context.Context) {
	pod := w.pod()
	key := pod.Namespace + "/" + pod.Name
	if rt := w.a.cfg.Runtimes[w.handler(pod)]; rt != nil {
		grace := gracePeriod(pod)
		for _, c := range w.ctrs {
			c.stopProber()
			if c.id == "" {
				continue
			}
			if err := rt.StopContainer(ctx, c.id, grace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				w.a.log.Warn("stop container", "pod", key, "container", c.name, "err", err)
			}
			if err := rt.RemoveContainer(ctx, c.id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				w.a.log.Warn("remove container", "pod", key, "container", c.name, "err", err)
			}
		}
		w.mu.Lock()
		sb := w.rec.SandboxID
		w.mu.Unlock()
		if sb != "" {
			if err := rt.StopPodSandbox(ctx, sb); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				w.a.log.Warn("stop sandbox", "pod", key, "err", err)
			}
			w.teardownNetwork(sb)
			if err := rt.RemovePodSandbox(ctx, sb); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				w.a.log.Warn("remove sandbox", "pod", key, "err", err)
			}
		}
	}
	if ctx.Err() != nil {
		return // shutting down: the next start finishes the removal
	}
	w.a.st.drop(pod.Namespace, pod.Name, pod.UID)
	w.mu.Lock()
	k := w.rec.Key()
	w.mu.Unlock()
	if err := w.a.db.DeletePod(k); err != nil {
		w.a.log.Error("delete pod state", "pod", key, "err", err)
	}
	// After the state: a directory left by a crash here is an orphan,
	// removed at the next start.
	if err := os.RemoveAll(w.a.podDir(pod)); err != nil {
		w.a.log.Warn("remove pod dir", "pod", key, "err", err)
	}
	w.a.log.Info("pod removed", "pod", key, "uid", pod.UID)
}

// podNetwork is the runtime's NetNSer when the pod gets a pod network
// address (Config.PodNetwork and a runtime with network namespaces).
func (w *podWorker) podNetwork(rt runtime.Runtime) runtime.NetNSer {
	if w.a.pnet == nil {
		return nil
	}
	nsr, _ := rt.(runtime.NetNSer)
	return nsr
}

// setupNetwork wires the sandbox into the pod network (again after an
// agent restart: podnet keeps a wired pod as it is).
func (w *podWorker) setupNetwork(ctx context.Context, nsr runtime.NetNSer, sandbox string) error {
	path, err := nsr.SandboxNetNS(ctx, sandbox)
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	ip, err := w.a.pnet.Setup(sandbox, path)
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	w.podIP = ip.String()
	return nil
}

// teardownNetwork removes the sandbox's veth and frees its address.
func (w *podWorker) teardownNetwork(sandbox string) {
	w.podIP = ""
	if w.a.pnet == nil {
		return
	}
	if err := w.a.pnet.Teardown(sandbox); err != nil {
		pod := w.pod()
		w.a.log.Warn("pod network teardown", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// ip is the pod's IP: its pod network address, else the node's.
func (w *podWorker) ip() string {
	if w.podIP != "" {
		return w.podIP
	}
	return w.a.cfg.Address
}
