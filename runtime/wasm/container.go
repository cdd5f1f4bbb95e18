package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/internal/status"
	"github.com/edgeorch/edgeorch/runtime/logfile"
)

// Exit codes reported for containers the runtime ended.
const (
	exitKilled = 137 // 128 + SIGKILL, as for a killed process
	exitTrap   = 1
)

type container struct {
	id        string
	sandboxID string
	cfg       runtime.ContainerConfig
	logPath   string
	labels    map[string]string
	mod       *compiled
	created   time.Time
	// defaultMemoryLimit: the memory limit is the runtime's default, the
	// container set none (Options.DefaultMemoryLimitBytes).
	defaultMemoryLimit bool

	mu       sync.Mutex
	life     status.Lifecycle
	stopping bool
	cancel   context.CancelFunc
	done     chan struct{} // closed when the module has ended
	memory   *memoryLimiter
}

func (c *container) status() runtime.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := runtime.ContainerStatus{
		ID:        c.id,
		SandboxID: c.sandboxID,
		Name:      c.cfg.Name,
		Image:     c.cfg.Image,
		CreatedAt: c.created,
		Labels:    maps.Clone(c.labels),
		LogPath:   c.logPath,
	}
	c.life.Apply(&st)
	return st
}

func (c *container) stats() runtime.ContainerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := runtime.ContainerStats{Timestamp: time.Now()}
	if c.memory != nil && c.life.State == runtime.StateRunning {
		st.MemoryBytes = c.memory.size.Load()
	}
	return st
}

// args is argv: Command then Args, or the container name then Args.
func (c *container) args() []string {
	if len(c.cfg.Command) > 0 {
		return append(append([]string(nil), c.cfg.Command...), c.cfg.Args...)
	}
	return append([]string{c.cfg.Name}, c.cfg.Args...)
}

func (c *container) start(ctx context.Context, rt wazero.Runtime) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.life.State != runtime.StateCreated {
		return fmt.Errorf("%w: container is %s", runtime.ErrState, c.life.State)
	}
	var (
		logs   *logfile.Writer
		stdout io.Writer = io.Discard
		stderr io.Writer = io.Discard
	)
	if c.logPath != "" {
		if err := os.MkdirAll(filepath.Dir(c.logPath), 0o750); err != nil {
			return fmt.Errorf("log directory: %w", err)
		}
		w, err := logfile.Open(c.logPath, c.cfg.LogMaxBytes, c.cfg.LogMaxFiles)
		if err != nil {
			return err
		}
		logs, stdout, stderr = w, w.Stream(logfile.Stdout), w.Stream(logfile.Stderr)
	}
	limiter := &memoryLimiter{limit: limitBytes(c.cfg.MemoryLimitBytes)}
	if need := minMemoryBytes(c.mod.mod); limiter.limit > 0 && need > limiter.limit {
		// The module cannot even be instantiated within the limit.
		now := time.Now()
		c.life.State, c.life.StartedAt, c.life.FinishedAt = runtime.StateExited, now, now
		c.life.ExitCode, c.life.Reason = exitKilled, runtime.ReasonOOMKilled
		c.life.Message = fmt.Sprintf("module needs %d bytes of initial memory, limit is %d%s", need, limiter.limit, c.limitNote())
		fmt.Fprintln(stderr, c.life.Message)
		if logs != nil {
			_ = logs.Close()
		}
		return nil
	}
	fsCfg, unmount, err := confinedMounts(c.cfg.Mounts)
	if err != nil {
		if logs != nil {
			_ = logs.Close()
		}
		return err
	}
	sockCtx, portEnv, err := withListeners(context.Background(), c.cfg.Ports, len(c.cfg.Mounts))
	if err != nil {
		unmount()
		if logs != nil {
			_ = logs.Close()
		}
		return err
	}
	runCtx, cancel := context.WithCancel(sockCtx)
	modCfg := wazero.NewModuleConfig().
		WithName(c.id).
		WithArgs(c.args()...).
		WithStdout(stdout).
		WithStderr(stderr).
		WithFSConfig(fsCfg).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(func(ns int64) {
			// Sleep, but wake up when stopped so the module can be closed.
			t := time.NewTimer(time.Duration(ns))
			defer t.Stop()
			select {
			case <-t.C:
			case <-runCtx.Done():
			}
		}).
		WithRandSource(rand.Reader)
	// The runtime's LISTEN_FDS* describe the real descriptors and win.
	for _, kv := range append(slices.Clone(c.cfg.Env), portEnv...) {
		modCfg = modCfg.WithEnv(kv.Key, kv.Value)
	}
	c.life.State = runtime.StateRunning
	c.life.StartedAt = time.Now()
	c.cancel = cancel
	c.memory = limiter
	c.done = make(chan struct{})
	go func() {
		defer unmount()
		c.run(experimental.WithMemoryAllocator(runCtx, limiter), rt, modCfg, logs)
	}()
	return nil
}

// minMemoryBytes is the initial memory the module defines or imports.
func minMemoryBytes(mod wazero.CompiledModule) uint64 {
	var pages uint32
	for _, m := range mod.ImportedMemories() {
		pages = max(pages, m.Min())
	}
	for _, m := range mod.ExportedMemories() {
		pages = max(pages, m.Min())
	}
	return uint64(pages) * pageSize
}

// run instantiates the module, which runs its _start function, and records
// how it ended.
func (c *container) run(ctx context.Context, rt wazero.Runtime, modCfg wazero.ModuleConfig, logs *logfile.Writer) {
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("runtime panic: %v", p)
			}
		}()
		mod, ierr := rt.InstantiateModule(ctx, c.mod.mod, modCfg)
		if mod != nil {
			_ = mod.Close(context.Background())
		}
		err = ierr
	}()
	if logs != nil {
		_ = logs.Close()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancel()
	c.life.FinishedAt = time.Now()
	c.life.State = runtime.StateExited
	c.life.ExitCode, c.life.Reason, c.life.Message = classify(err, c.stopping, c.memory.refused.Load())
	if c.life.Reason == runtime.ReasonOOMKilled {
		c.life.Message += c.limitNote()
	}
	close(c.done)
}

// limitNote tells, in an OOMKilled message, that the limit reached was
// the node's default rather than the container's own.
func (c *container) limitNote() string {
	if !c.defaultMemoryLimit {
		return ""
	}
	size := limitBytes(c.cfg.MemoryLimitBytes)
	amount := fmt.Sprintf("%d bytes", size)
	if size%(1<<20) == 0 {
		amount = fmt.Sprintf("%d MiB", size>>20)
	}
	return " (the node's default limit of " + amount + " for wasm containers without resources.limits.memory)"
}

// classify maps how a module ended to exit code, reason and message.
func classify(err error, stopped, memoryRefused bool) (int32, string, string) {
	var exit *sys.ExitError
	isExit := errors.As(err, &exit)
	switch {
	case stopped && (err != nil && (!isExit || exit.ExitCode() == sys.ExitCodeContextCanceled)):
		return exitKilled, runtime.ReasonKilled, "stopped"
	case err == nil:
		return 0, runtime.ReasonCompleted, ""
	case memoryRefused && (!isExit || exit.ExitCode() != 0):
		return exitKilled, runtime.ReasonOOMKilled, "memory limit reached: " + trapMessage(err)
	case isExit:
		code := int32(exit.ExitCode())
		if code == 0 {
			return 0, runtime.ReasonCompleted, ""
		}
		return code, runtime.ReasonError, ""
	}
	return exitTrap, runtime.ReasonError, trapMessage(err)
}

// trapMessage is the first line of the error ("wasm error: unreachable"),
// without wazero's module and function prefix and stack trace.
func trapMessage(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if _, rest, ok := strings.Cut(s, "] failed: "); ok && strings.HasPrefix(s, "module[") {
		s = rest
	}
	return s
}

// Stop cancels a running module and waits for it to end (bounded by ctx). A
// container that never started is marked exited; stopping an exited one is
// a no-op.
func (c *container) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.life.EndUnstarted(exitKilled, runtime.ReasonKilled, "stopped before it started") {
		c.mu.Unlock()
		return nil
	}
	c.stopping = true
	c.cancel()
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for module to end: %w", ctx.Err())
	}
}
