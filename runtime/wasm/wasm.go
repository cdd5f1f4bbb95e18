// Package wasm is the WebAssembly runtime: it runs WASI command modules
// in-process with wazero. A pod sandbox is bookkeeping only; every container
// is one module instance with its own arguments, environment, preopened
// directories, memory limit and CRI-format log file.
package wasm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/internal/pods"
	"github.com/edgeorch/edgeorch/runtime/internal/status"
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
	// DefaultMemoryLimitBytes caps the linear memory of a container whose
	// configuration sets no memory limit (MemoryLimitBytes 0), so that a
	// pod without limits.memory cannot take the board's memory (a wasm32
	// module may otherwise grow to 4 GiB). 0 = no default cap.
	DefaultMemoryLimitBytes int64
}

// Runtime implements runtime.Runtime and runtime.Statser.
type Runtime struct {
	opts    Options
	rt      wazero.Runtime
	modules *moduleCache

	pods *pods.Registry[*container]
}

var (
	_ runtime.Runtime = (*Runtime)(nil)
	_ runtime.Statser = (*Runtime)(nil)
)

// New creates the runtime. ctx bounds only the setup.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.DefaultMemoryLimitBytes < 0 {
		return nil, fmt.Errorf("%w: default memory limit %d: must not be negative", runtime.ErrInvalid, opts.DefaultMemoryLimitBytes)
	}
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
	// No DWARF stack traces: only the first line of a trap is reported
	// (trapMessage), and resolving source lines parses the module's DWARF
	// sections at every stop of a module built with them (each stop
	// unwinds the stack), which cost more CPU than the whole start.
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true).
		WithDebugInfoEnabled(false)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("%w: instantiate WASI: %w", runtime.ErrUnavailable, err)
	}
	return &Runtime{
		opts:    opts,
		rt:      rt,
		modules: newModuleCache(rt),
		pods:    pods.New[*container](),
	}, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return HandlerName }

// RunPodSandbox implements runtime.Runtime.
func (r *Runtime) RunPodSandbox(ctx context.Context, cfg runtime.PodSandboxConfig) (string, error) {
	if cfg.LogDirectory != "" {
		if err := os.MkdirAll(cfg.LogDirectory, 0o750); err != nil {
			return "", fmt.Errorf("run sandbox %s/%s: log directory: %w", cfg.Namespace, cfg.Name, err)
		}
	}
	return r.pods.AddSandbox(cfg)
}

// StopPodSandbox stops every container of the sandbox; stopping a stopped
// sandbox succeeds.
func (r *Runtime) StopPodSandbox(ctx context.Context, sandboxID string) error {
	return r.pods.StopSandbox(ctx, sandboxID)
}

// RemovePodSandbox stops and removes the sandbox and its containers;
// removing a missing sandbox succeeds.
func (r *Runtime) RemovePodSandbox(ctx context.Context, sandboxID string) error {
	return r.pods.RemoveSandbox(ctx, sandboxID, r.RemoveContainer)
}

// CreateContainer implements runtime.Runtime: it checks the configuration
// and compiles the module (reusing a compiled module of the same content).
func (r *Runtime) CreateContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (string, error) {
	sb, err := r.pods.ReadySandbox(sandboxID)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	sbCfg := sb.Config
	if r.opts.MaxContainers > 0 && r.pods.Len() >= r.opts.MaxContainers {
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
	if err := checkPorts(cfg.Ports); err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	mod, err := r.modules.acquire(ctx, cfg.Image)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	if len(cfg.Ports) > 0 {
		if err := checkImports(r.rt, mod.mod); err != nil {
			r.modules.release(ctx, mod)
			return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
		}
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
	defaultLimit := false
	if cfg.MemoryLimitBytes <= 0 && r.opts.DefaultMemoryLimitBytes > 0 {
		cfg.MemoryLimitBytes = r.opts.DefaultMemoryLimitBytes
		defaultLimit = true
	}
	c := &container{
		id:        pods.NewID(),
		sandboxID: sandboxID,
		cfg:       cfg,
		logPath:   logPath,
		labels:    labels,
		mod:       mod,
		created:   time.Now(),

		defaultMemoryLimit: defaultLimit,
	}
	err = r.pods.AddContainer(sandboxID, c.id, c, func(count int) error {
		if r.opts.MaxContainers > 0 && count >= r.opts.MaxContainers {
			return fmt.Errorf("%w: at most %d containers", runtime.ErrUnavailable, r.opts.MaxContainers)
		}
		return nil
	})
	if err != nil {
		r.modules.release(ctx, mod)
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	return c.id, nil
}

func (r *Runtime) container(id string) (*container, error) {
	return r.pods.Container(id)
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
	if err := c.Stop(ctx); err != nil {
		return fmt.Errorf("stop container %s (%s): %w", c.cfg.Name, containerID, err)
	}
	return nil
}

// RemoveContainer implements runtime.Runtime. Removing a running container
// is ErrState; removing a missing one succeeds.
func (r *Runtime) RemoveContainer(ctx context.Context, containerID string) error {
	c, ok, err := r.pods.RemoveContainer(containerID, func(c *container) error {
		if st := c.status().State; st == runtime.StateRunning {
			return fmt.Errorf("remove container %s (%s): %w: container is running", c.cfg.Name, containerID, runtime.ErrState)
		}
		return nil
	})
	if ok && err == nil {
		r.modules.release(ctx, c.mod)
	}
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
func (r *Runtime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]runtime.ContainerStatus, error) {
	cs := r.pods.Containers()
	all := make([]runtime.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		all = append(all, c.status())
	}
	return status.Select(all, filter), nil
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
	cs, ok := r.pods.Close()
	if !ok {
		return nil
	}
	var errs []error
	for _, c := range cs {
		if err := c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop container %s: %w", c.id, err))
		}
	}
	if err := r.rt.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close wazero runtime: %w", err))
	}
	return errors.Join(errs...)
}
