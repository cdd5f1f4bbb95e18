// Package wasm is the WebAssembly runtime: it runs WASI command modules
// in-process with wazero. A pod sandbox is bookkeeping only; every container
// is one module instance with its own arguments, environment, preopened
// directories, memory limit and CRI-format log file.
package wasm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/edgeorch/edgeorch/runtime"
)

// HandlerName is the runtime handler name this runtime advertises.
const HandlerName = "wasm"

// Options configure New.
type Options struct {
	// CacheDir keeps compiled modules on disk across restarts; empty keeps
	// them in memory only.
	CacheDir string
	// MaxContainers caps how many containers may exist at once (created or
	// not yet removed); CreateContainer beyond it fails with
	// runtime.ErrUnavailable. 0 = no cap.
	MaxContainers int
}

// Runtime implements runtime.Runtime and runtime.Statser.
type Runtime struct {
	opts    Options
	rt      wazero.Runtime
	modules *moduleCache

	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	containers map[string]*container
	closed     bool
}

var (
	_ runtime.Runtime = (*Runtime)(nil)
	_ runtime.Statser = (*Runtime)(nil)
)

type sandbox struct {
	id      string
	cfg     runtime.PodSandboxConfig
	ready   bool
	created time.Time
}

// New creates the runtime. ctx bounds only the setup.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	var cache wazero.CompilationCache
	if opts.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("%w: compilation cache %s: %w", runtime.ErrUnavailable, opts.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("%w: instantiate WASI: %w", runtime.ErrUnavailable, err)
	}
	return &Runtime{
		opts:       opts,
		rt:         rt,
		modules:    newModuleCache(rt),
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
	}, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return HandlerName }

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RunPodSandbox implements runtime.Runtime.
func (r *Runtime) RunPodSandbox(ctx context.Context, cfg runtime.PodSandboxConfig) (string, error) {
	if cfg.LogDirectory != "" {
		if err := os.MkdirAll(cfg.LogDirectory, 0o750); err != nil {
			return "", fmt.Errorf("run sandbox %s/%s: log directory: %w", cfg.Namespace, cfg.Name, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return "", fmt.Errorf("run sandbox: %w: runtime closed", runtime.ErrUnavailable)
	}
	sb := &sandbox{id: newID(), cfg: cfg, ready: true, created: time.Now()}
	sb.cfg.Labels = maps.Clone(cfg.Labels)
	r.sandboxes[sb.id] = sb
	return sb.id, nil
}

// StopPodSandbox stops every container of the sandbox; stopping a stopped
// sandbox succeeds.
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

// RemovePodSandbox stops and removes the sandbox and its containers;
// removing a missing sandbox succeeds.
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
	cs := r.containersOf(sandboxID)
	r.mu.Unlock()
	for _, c := range cs {
		if err := r.RemoveContainer(ctx, c.id); err != nil {
			return fmt.Errorf("remove sandbox %s: %w", sandboxID, err)
		}
	}
	r.mu.Lock()
	delete(r.sandboxes, sandboxID)
	r.mu.Unlock()
	return nil
}

// containersOf lists a sandbox's containers; r.mu is held.
func (r *Runtime) containersOf(sandboxID string) []*container {
	var cs []*container
	for _, c := range r.containers {
		if c.sandboxID == sandboxID {
			cs = append(cs, c)
		}
	}
	return cs
}

// CreateContainer implements runtime.Runtime: it checks the configuration
// and compiles the module (reusing a compiled module of the same content).
func (r *Runtime) CreateContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (string, error) {
	r.mu.Lock()
	sb, ok := r.sandboxes[sandboxID]
	var (
		sbCfg runtime.PodSandboxConfig
		ready bool
		count = len(r.containers)
	)
	if ok {
		sbCfg, ready = sb.cfg, sb.ready
	}
	r.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("create container %q: sandbox %s: %w", cfg.Name, sandboxID, runtime.ErrNotFound)
	}
	if !ready {
		return "", fmt.Errorf("create container %q: sandbox %s is stopped: %w", cfg.Name, sandboxID, runtime.ErrState)
	}
	if r.opts.MaxContainers > 0 && count >= r.opts.MaxContainers {
		return "", fmt.Errorf("create container %q: %w: at most %d containers", cfg.Name, runtime.ErrUnavailable, r.opts.MaxContainers)
	}
	if cfg.Name == "" {
		return "", fmt.Errorf("create container: %w: name required", runtime.ErrInvalid)
	}
	for _, m := range cfg.Mounts {
		if m.ContainerPath == "" {
			return "", fmt.Errorf("create container %q: %w: mount of %s has no container path", cfg.Name, runtime.ErrInvalid, m.HostPath)
		}
		st, err := os.Stat(m.HostPath)
		if err != nil {
			return "", fmt.Errorf("create container %q: %w: mount: %w", cfg.Name, runtime.ErrInvalid, err)
		}
		if !st.IsDir() {
			return "", fmt.Errorf("create container %q: %w: mount %s: wasm containers can only mount directories", cfg.Name, runtime.ErrInvalid, m.HostPath)
		}
	}
	mod, err := r.modules.acquire(ctx, cfg.Image)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	logPath := cfg.LogPath
	switch {
	case logPath != "" && !filepath.IsAbs(logPath) && sbCfg.LogDirectory != "":
		logPath = filepath.Join(sbCfg.LogDirectory, logPath)
	case logPath == "" && sbCfg.LogDirectory != "":
		logPath = filepath.Join(sbCfg.LogDirectory, cfg.Name+".log")
	}
	labels := maps.Clone(sbCfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, cfg.Labels)
	c := &container{
		id:        newID(),
		sandboxID: sandboxID,
		cfg:       cfg,
		logPath:   logPath,
		labels:    labels,
		mod:       mod,
		created:   time.Now(),
		state:     runtime.StateCreated,
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.modules.release(ctx, mod)
		return "", fmt.Errorf("create container %q: %w: runtime closed", cfg.Name, runtime.ErrUnavailable)
	}
	if r.opts.MaxContainers > 0 && len(r.containers) >= r.opts.MaxContainers {
		r.modules.release(ctx, mod)
		return "", fmt.Errorf("create container %q: %w: at most %d containers", cfg.Name, runtime.ErrUnavailable, r.opts.MaxContainers)
	}
	if _, ok := r.sandboxes[sandboxID]; !ok {
		r.modules.release(ctx, mod)
		return "", fmt.Errorf("create container %q: sandbox %s: %w", cfg.Name, sandboxID, runtime.ErrNotFound)
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

// StartContainer implements runtime.Runtime. The module runs in its own
// goroutine until it exits or is stopped.
func (r *Runtime) StartContainer(ctx context.Context, containerID string) error {
	c, err := r.container(containerID)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := c.start(ctx, r.rt); err != nil {
		return fmt.Errorf("start container %s (%s): %w", c.cfg.Name, containerID, err)
	}
	return nil
}

// StopContainer implements runtime.Runtime. A module cannot be asked to
// stop, so it is cancelled at once whatever the timeout.
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

// RemoveContainer implements runtime.Runtime. Removing a running container
// is ErrState; removing a missing one succeeds.
func (r *Runtime) RemoveContainer(ctx context.Context, containerID string) error {
	r.mu.Lock()
	c, ok := r.containers[containerID]
	if !ok {
		r.mu.Unlock()
		return nil
	}
	if st := c.status().State; st == runtime.StateRunning {
		r.mu.Unlock()
		return fmt.Errorf("remove container %s (%s): %w: container is running", c.cfg.Name, containerID, runtime.ErrState)
	}
	delete(r.containers, containerID)
	r.mu.Unlock()
	r.modules.release(ctx, c.mod)
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
func (r *Runtime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]runtime.ContainerStatus, error) {
	r.mu.Lock()
	cs := make([]*container, 0, len(r.containers))
	for _, c := range r.containers {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	var out []runtime.ContainerStatus
	for _, c := range cs {
		st := c.status()
		if matches(st, filter) {
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

func matches(st runtime.ContainerStatus, f runtime.ContainerFilter) bool {
	if f.SandboxID != "" && st.SandboxID != f.SandboxID {
		return false
	}
	if f.State != nil && st.State != *f.State {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := st.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ContainerStats implements runtime.Statser: memory is the size of the
// module's linear memory.
func (r *Runtime) ContainerStats(ctx context.Context, containerID string) (runtime.ContainerStats, error) {
	c, err := r.container(containerID)
	if err != nil {
		return runtime.ContainerStats{}, fmt.Errorf("stats: %w", err)
	}
	return c.stats(), nil
}

// Close stops every container and releases the wazero runtime.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	cs := make([]*container, 0, len(r.containers))
	for _, c := range r.containers {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := c.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop container %s: %w", c.id, err))
		}
	}
	if err := r.rt.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close wazero runtime: %w", err))
	}
	return errors.Join(errs...)
}
