// Package fake is an in-memory runtime.Runtime for simulations and tests.
// Its "images" are scripts named by URL:
//
//	fake://run            runs until stopped
//	fake://exit[/N]       exits at once with code N (default: argv[1], else 0)
//	fake://sleep/<dur>    runs for a Go duration (e.g. 100ms), then exits 0
//	fake://env            prints "arg[i]=..." and "env K=V" lines, exits 0
//	fake://oom            is OOMKilled (exit 137) at once
//
// Each prints a line to the container's CRI log first. Stopping a running
// container ends it at once with exit code 143, as a process that obeys
// SIGTERM.
package fake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/logfile"
)

// HandlerName is the default runtime handler name.
const HandlerName = "fake"

// Exit codes of ended containers.
const (
	ExitTerminated = 143 // stopped: 128 + SIGTERM
	ExitOOM        = 137
)

// Runtime implements runtime.Runtime in memory.
type Runtime struct {
	name string

	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	containers map[string]*container
	closed     bool
}

var _ runtime.Runtime = (*Runtime)(nil)

type sandbox struct {
	cfg   runtime.PodSandboxConfig
	ready bool
}

// New returns an empty fake runtime advertising handler name (HandlerName
// when empty).
func New(name string) *Runtime {
	if name == "" {
		name = HandlerName
	}
	return &Runtime{name: name, sandboxes: map[string]*sandbox{}, containers: map[string]*container{}}
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return r.name }

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RunPodSandbox implements runtime.Runtime.
func (r *Runtime) RunPodSandbox(ctx context.Context, cfg runtime.PodSandboxConfig) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return "", fmt.Errorf("run sandbox: %w: runtime closed", runtime.ErrUnavailable)
	}
	id := newID()
	cfg.Labels = maps.Clone(cfg.Labels)
	r.sandboxes[id] = &sandbox{cfg: cfg, ready: true}
	return id, nil
}

// StopPodSandbox implements runtime.Runtime.
func (r *Runtime) StopPodSandbox(ctx context.Context, sandboxID string) error {
	r.mu.Lock()
	sb, ok := r.sandboxes[sandboxID]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("stop sandbox %s: %w", sandboxID, runtime.ErrNotFound)
	}
	sb.ready = false
	cs := r.containersOf(sandboxID)
	r.mu.Unlock()
	for _, c := range cs {
		if err := c.stop(ctx); err != nil {
			return fmt.Errorf("stop sandbox %s: %w", sandboxID, err)
		}
	}
	return nil
}

// RemovePodSandbox implements runtime.Runtime; removing a missing sandbox
// succeeds.
func (r *Runtime) RemovePodSandbox(ctx context.Context, sandboxID string) error {
	r.mu.Lock()
	_, ok := r.sandboxes[sandboxID]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	if err := r.StopPodSandbox(ctx, sandboxID); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", sandboxID, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.containersOf(sandboxID) {
		delete(r.containers, c.id)
	}
	delete(r.sandboxes, sandboxID)
	return nil
}

func (r *Runtime) containersOf(sandboxID string) []*container {
	var cs []*container
	for _, c := range r.containers {
		if c.sandboxID == sandboxID {
			cs = append(cs, c)
		}
	}
	return cs
}

// script is a parsed fake image.
type script struct {
	kind    string // run, exit, sleep, env, oom
	code    int
	codeSet bool
	sleep   time.Duration
}

func parseImage(image string) (script, error) {
	rest, ok := strings.CutPrefix(image, "fake://")
	if !ok {
		return script{}, fmt.Errorf("%w: %q is not a fake:// image", runtime.ErrImage, image)
	}
	kind, arg, hasArg := strings.Cut(rest, "/")
	s := script{kind: kind}
	switch kind {
	case "run", "env", "oom":
		if hasArg {
			return script{}, fmt.Errorf("%w: %q takes no argument", runtime.ErrImage, image)
		}
	case "exit":
		if hasArg {
			n, err := strconv.Atoi(arg)
			if err != nil {
				return script{}, fmt.Errorf("%w: %q: exit code: %w", runtime.ErrImage, image, err)
			}
			s.code, s.codeSet = n, true
		}
	case "sleep":
		d, err := time.ParseDuration(arg)
		if err != nil {
			return script{}, fmt.Errorf("%w: %q: duration: %w", runtime.ErrImage, image, err)
		}
		s.sleep = d
	default:
		return script{}, fmt.Errorf("%w: unknown fake program %q", runtime.ErrImage, image)
	}
	return s, nil
}

// CreateContainer implements runtime.Runtime.
func (r *Runtime) CreateContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (string, error) {
	s, err := parseImage(cfg.Image)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, ok := r.sandboxes[sandboxID]
	if !ok {
		return "", fmt.Errorf("create container %q: sandbox %s: %w", cfg.Name, sandboxID, runtime.ErrNotFound)
	}
	if !sb.ready {
		return "", fmt.Errorf("create container %q: sandbox %s is stopped: %w", cfg.Name, sandboxID, runtime.ErrState)
	}
	logPath := cfg.LogPath
	if logPath != "" && !filepath.IsAbs(logPath) && sb.cfg.LogDirectory != "" {
		logPath = filepath.Join(sb.cfg.LogDirectory, logPath)
	}
	labels := maps.Clone(sb.cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, cfg.Labels)
	c := &container{
		id: newID(), sandboxID: sandboxID, cfg: cfg, script: s, logPath: logPath,
		labels: labels, created: time.Now(), state: runtime.StateCreated,
	}
	r.containers[c.id] = c
	return c.id, nil
}

func (r *Runtime) container(id string) (*container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	return c, nil
}

// StartContainer implements runtime.Runtime.
func (r *Runtime) StartContainer(ctx context.Context, containerID string) error {
	c, err := r.container(containerID)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := c.start(); err != nil {
		return fmt.Errorf("start container %s (%s): %w", c.cfg.Name, containerID, err)
	}
	return nil
}

// StopContainer implements runtime.Runtime; fake programs obey the stop at once.
func (r *Runtime) StopContainer(ctx context.Context, containerID string, timeout time.Duration) error {
	c, err := r.container(containerID)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if err := c.stop(ctx); err != nil {
		return fmt.Errorf("stop container %s (%s): %w", c.cfg.Name, containerID, err)
	}
	return nil
}

// RemoveContainer implements runtime.Runtime.
func (r *Runtime) RemoveContainer(ctx context.Context, containerID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[containerID]
	if !ok {
		return nil
	}
	if c.status().State == runtime.StateRunning {
		return fmt.Errorf("remove container %s (%s): %w: container is running", c.cfg.Name, containerID, runtime.ErrState)
	}
	delete(r.containers, containerID)
	return nil
}

// ContainerStatus implements runtime.Runtime.
func (r *Runtime) ContainerStatus(ctx context.Context, containerID string) (runtime.ContainerStatus, error) {
	c, err := r.container(containerID)
	if err != nil {
		return runtime.ContainerStatus{}, fmt.Errorf("status: %w", err)
	}
	return c.status(), nil
}

// ListContainers implements runtime.Runtime, oldest first.
func (r *Runtime) ListContainers(ctx context.Context, f runtime.ContainerFilter) ([]runtime.ContainerStatus, error) {
	r.mu.Lock()
	cs := make([]*container, 0, len(r.containers))
	for _, c := range r.containers {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	var out []runtime.ContainerStatus
	for _, c := range cs {
		st := c.status()
		if f.SandboxID != "" && st.SandboxID != f.SandboxID || f.State != nil && st.State != *f.State {
			continue
		}
		match := true
		for k, v := range f.Labels {
			if got, ok := st.Labels[k]; !ok || got != v {
				match = false
			}
		}
		if match {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Close stops every container.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	cs := make([]*container, 0, len(r.containers))
	for _, c := range r.containers {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := c.stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type container struct {
	id        string
	sandboxID string
	cfg       runtime.ContainerConfig
	script    script
	logPath   string
	labels    map[string]string
	created   time.Time

	mu       sync.Mutex
	state    runtime.ContainerState
	started  time.Time
	finished time.Time
	exitCode int32
	reason   string
	message  string
	stopCh   chan struct{}
	done     chan struct{}
}

func (c *container) status() runtime.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return runtime.ContainerStatus{
		ID: c.id, SandboxID: c.sandboxID, Name: c.cfg.Name, Image: c.cfg.Image,
		State: c.state, CreatedAt: c.created, StartedAt: c.started, FinishedAt: c.finished,
		ExitCode: c.exitCode, Reason: c.reason, Message: c.message,
		Labels: maps.Clone(c.labels), LogPath: c.logPath,
	}
}

func (c *container) argv() []string {
	if len(c.cfg.Command) > 0 {
		return append(append([]string(nil), c.cfg.Command...), c.cfg.Args...)
	}
	return append([]string{c.cfg.Name}, c.cfg.Args...)
}

func (c *container) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != runtime.StateCreated {
		return fmt.Errorf("%w: container is %s", runtime.ErrState, c.state)
	}
	var logs *logfile.Writer
	if c.logPath != "" {
		if err := os.MkdirAll(filepath.Dir(c.logPath), 0o750); err != nil {
			return fmt.Errorf("log directory: %w", err)
		}
		w, err := logfile.Open(c.logPath, c.cfg.LogMaxBytes, c.cfg.LogMaxFiles)
		if err != nil {
			return err
		}
		logs = w
	}
	c.state, c.started = runtime.StateRunning, time.Now()
	c.stopCh, c.done = make(chan struct{}), make(chan struct{})
	go c.run(logs)
	return nil
}

// run plays the script and records how it ended.
func (c *container) run(logs *logfile.Writer) {
	out := io.Discard
	if logs != nil {
		out = logs.Stream(logfile.Stdout)
	}
	argv := c.argv()
	code, reason := 0, runtime.ReasonCompleted
	stopped := false
	wait := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.stopCh:
			stopped = true
		}
	}
	switch s := c.script; s.kind {
	case "run":
		fmt.Fprintf(out, "%s running\n", argv[0])
		<-c.stopCh
		stopped = true
	case "sleep":
		fmt.Fprintf(out, "%s sleeping %v\n", argv[0], s.sleep)
		wait(s.sleep)
	case "exit":
		code = s.code
		if !s.codeSet && len(argv) > 1 {
			code, _ = strconv.Atoi(argv[1])
		}
		fmt.Fprintf(out, "exiting with code %d\n", code)
	case "env":
		for i, a := range argv {
			fmt.Fprintf(out, "arg[%d]=%s\n", i, a)
		}
		for _, kv := range c.cfg.Env {
			fmt.Fprintf(out, "env %s=%s\n", kv.Key, kv.Value)
		}
	case "oom":
		fmt.Fprintf(out, "%s allocating\n", argv[0])
		code, reason = ExitOOM, runtime.ReasonOOMKilled
	}
	switch {
	case stopped:
		code, reason = ExitTerminated, runtime.ReasonError
	case code != 0 && reason == runtime.ReasonCompleted:
		reason = runtime.ReasonError
	}
	if logs != nil {
		_ = logs.Close()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state, c.finished = runtime.StateExited, time.Now()
	c.exitCode, c.reason = int32(code), reason
	close(c.done)
}

func (c *container) stop(ctx context.Context) error {
	c.mu.Lock()
	switch c.state {
	case runtime.StateCreated:
		now := time.Now()
		c.state, c.started, c.finished = runtime.StateExited, now, now
		c.exitCode, c.reason, c.message = ExitTerminated, runtime.ReasonError, "stopped before it started"
		c.mu.Unlock()
		return nil
	case runtime.StateExited:
		c.mu.Unlock()
		return nil
	}
	select {
	case <-c.stopCh:
	default:
		close(c.stopCh)
	}
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for container to end: %w", ctx.Err())
	}
}
