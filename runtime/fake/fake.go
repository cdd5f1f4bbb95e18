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
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/internal/pods"
	"github.com/edgeorch/edgeorch/runtime/internal/status"
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
	pods *pods.Registry[*container]
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns an empty fake runtime advertising handler name (HandlerName
// when empty).
func New(name string) *Runtime {
	if name == "" {
		name = HandlerName
	}
	return &Runtime{name: name, pods: pods.New[*container]()}
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return r.name }

// RunPodSandbox implements runtime.Runtime.
func (r *Runtime) RunPodSandbox(ctx context.Context, cfg runtime.PodSandboxConfig) (string, error) {
	return r.pods.AddSandbox(cfg)
}

// StopPodSandbox implements runtime.Runtime.
func (r *Runtime) StopPodSandbox(ctx context.Context, sandboxID string) error {
	return r.pods.StopSandbox(ctx, sandboxID)
}

// RemovePodSandbox implements runtime.Runtime; removing a missing sandbox
// succeeds.
func (r *Runtime) RemovePodSandbox(ctx context.Context, sandboxID string) error {
	return r.pods.RemoveSandbox(ctx, sandboxID, r.RemoveContainer)
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
	sb, err := r.pods.ReadySandbox(sandboxID)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	logPath := cfg.LogPath
	if logPath != "" && !filepath.IsAbs(logPath) && sb.Config.LogDirectory != "" {
		logPath = filepath.Join(sb.Config.LogDirectory, logPath)
	}
	labels := maps.Clone(sb.Config.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, cfg.Labels)
	c := &container{
		id: pods.NewID(), sandboxID: sandboxID, cfg: cfg, script: s, logPath: logPath,
		labels: labels, created: time.Now(),
	}
	if err := r.pods.AddContainer(sandboxID, c.id, c, nil); err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	return c.id, nil
}

func (r *Runtime) container(id string) (*container, error) {
	return r.pods.Container(id)
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
	if err := c.Stop(ctx); err != nil {
		return fmt.Errorf("stop container %s (%s): %w", c.cfg.Name, containerID, err)
	}
	return nil
}

// RemoveContainer implements runtime.Runtime.
func (r *Runtime) RemoveContainer(ctx context.Context, containerID string) error {
	_, _, err := r.pods.RemoveContainer(containerID, func(c *container) error {
		if c.status().State == runtime.StateRunning {
			return fmt.Errorf("remove container %s (%s): %w: container is running", c.cfg.Name, containerID, runtime.ErrState)
		}
		return nil
	})
	return err
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
	cs := r.pods.Containers()
	all := make([]runtime.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		all = append(all, c.status())
	}
	return status.Select(all, f), nil
}

// Close stops every container.
func (r *Runtime) Close(ctx context.Context) error {
	cs, _ := r.pods.Close()
	var errs []error
	for _, c := range cs {
		if err := c.Stop(ctx); err != nil {
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

	mu     sync.Mutex
	life   status.Lifecycle
	stopCh chan struct{}
	done   chan struct{}
}

func (c *container) status() runtime.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := runtime.ContainerStatus{
		ID: c.id, SandboxID: c.sandboxID, Name: c.cfg.Name, Image: c.cfg.Image,
		CreatedAt: c.created, Labels: maps.Clone(c.labels), LogPath: c.logPath,
	}
	c.life.Apply(&st)
	return st
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
	if c.life.State != runtime.StateCreated {
		return fmt.Errorf("%w: container is %s", runtime.ErrState, c.life.State)
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
	c.life.State, c.life.StartedAt = runtime.StateRunning, time.Now()
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
	c.life.State, c.life.FinishedAt = runtime.StateExited, time.Now()
	c.life.ExitCode, c.life.Reason = int32(code), reason
	close(c.done)
}

// Stop ends the container and waits for it (bounded by ctx).
func (c *container) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.life.EndUnstarted(ExitTerminated, runtime.ReasonError, "stopped before it started") {
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
