// Package pods is the sandbox and container bookkeeping the in-process
// runtimes (runtime/wasm, runtime/fake) share: which sandboxes exist and are
// ready, which containers belong to them, and the stop/remove rules of
// runtime.Runtime for sandboxes.
package pods

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

// NewID returns a random 128-bit hex ID.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Container is what the registry needs of a runtime's container.
type Container interface {
	// Stop ends the container and waits (bounded by ctx) until it has.
	Stop(ctx context.Context) error
}

// Sandbox is one pod sandbox.
type Sandbox struct {
	ID        string
	Config    runtime.PodSandboxConfig
	Ready     bool
	CreatedAt time.Time
}

type entry[C Container] struct {
	c         C
	sandboxID string
}

// Registry holds sandboxes and containers. It is safe for concurrent use.
type Registry[C Container] struct {
	mu         sync.Mutex
	sandboxes  map[string]*Sandbox
	containers map[string]entry[C]
	closed     bool
}

// New returns an empty registry.
func New[C Container]() *Registry[C] {
	return &Registry[C]{sandboxes: map[string]*Sandbox{}, containers: map[string]entry[C]{}}
}

// AddSandbox records a new ready sandbox and returns its ID.
func (r *Registry[C]) AddSandbox(cfg runtime.PodSandboxConfig) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return "", fmt.Errorf("run sandbox: %w: runtime closed", runtime.ErrUnavailable)
	}
	sb := &Sandbox{ID: NewID(), Config: cfg, Ready: true, CreatedAt: time.Now()}
	sb.Config.Labels = maps.Clone(cfg.Labels)
	r.sandboxes[sb.ID] = sb
	return sb.ID, nil
}

// Sandbox returns a copy of a sandbox.
func (r *Registry[C]) Sandbox(id string) (Sandbox, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, ok := r.sandboxes[id]
	if !ok {
		return Sandbox{}, false
	}
	return *sb, true
}

// ReadySandbox returns a copy of a sandbox containers may be created in:
// ErrNotFound when there is none with that ID, ErrState when it is
// stopped.
func (r *Registry[C]) ReadySandbox(id string) (Sandbox, error) {
	sb, ok := r.Sandbox(id)
	if !ok {
		return sb, fmt.Errorf("sandbox %s: %w", id, runtime.ErrNotFound)
	}
	if !sb.Ready {
		return sb, fmt.Errorf("sandbox %s is stopped: %w", id, runtime.ErrState)
	}
	return sb, nil
}

// StopSandbox marks the sandbox stopped and stops its containers; stopping
// a stopped sandbox succeeds.
func (r *Registry[C]) StopSandbox(ctx context.Context, id string) error {
	r.mu.Lock()
	sb, ok := r.sandboxes[id]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("stop sandbox %s: %w", id, runtime.ErrNotFound)
	}
	sb.Ready = false
	cs := r.containersOf(id)
	r.mu.Unlock()
	for _, c := range cs {
		if err := c.Stop(ctx); err != nil {
			return fmt.Errorf("stop sandbox %s: %w", id, err)
		}
	}
	return nil
}

// RemoveSandbox stops the sandbox, removes its containers with remove and
// forgets it; removing a missing sandbox succeeds.
func (r *Registry[C]) RemoveSandbox(ctx context.Context, id string, remove func(ctx context.Context, containerID string) error) error {
	if _, ok := r.Sandbox(id); !ok {
		return nil
	}
	if err := r.StopSandbox(ctx, id); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	r.mu.Lock()
	var ids []string
	for cid, e := range r.containers {
		if e.sandboxID == id {
			ids = append(ids, cid)
		}
	}
	r.mu.Unlock()
	for _, cid := range ids {
		if err := remove(ctx, cid); err != nil {
			return fmt.Errorf("remove sandbox %s: %w", id, err)
		}
	}
	r.mu.Lock()
	delete(r.sandboxes, id)
	r.mu.Unlock()
	return nil
}

// containersOf lists a sandbox's containers; r.mu is held.
func (r *Registry[C]) containersOf(sandboxID string) []C {
	var cs []C
	for _, e := range r.containers {
		if e.sandboxID == sandboxID {
			cs = append(cs, e.c)
		}
	}
	return cs
}

// AddContainer records a container of a sandbox. check, when not nil, runs
// under the registry's lock with the number of containers and may refuse.
func (r *Registry[C]) AddContainer(sandboxID, id string, c C, check func(count int) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("%w: runtime closed", runtime.ErrUnavailable)
	}
	if check != nil {
		if err := check(len(r.containers)); err != nil {
			return err
		}
	}
	if _, ok := r.sandboxes[sandboxID]; !ok {
		return fmt.Errorf("sandbox %s: %w", sandboxID, runtime.ErrNotFound)
	}
	r.containers[id] = entry[C]{c: c, sandboxID: sandboxID}
	return nil
}

// Container returns a container, or an error wrapping ErrNotFound.
func (r *Registry[C]) Container(id string) (C, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.containers[id]
	if !ok {
		var zero C
		return zero, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	return e.c, nil
}

// RemoveContainer forgets a container when canRemove (run under the
// registry's lock) allows it. It reports whether the container was there.
func (r *Registry[C]) RemoveContainer(id string, canRemove func(C) error) (C, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.containers[id]
	if !ok {
		return e.c, false, nil
	}
	if err := canRemove(e.c); err != nil {
		return e.c, true, err
	}
	delete(r.containers, id)
	return e.c, true, nil
}

// Containers lists every container.
func (r *Registry[C]) Containers() []C {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := make([]C, 0, len(r.containers))
	for _, e := range r.containers {
		cs = append(cs, e.c)
	}
	return cs
}

// Len is the number of containers.
func (r *Registry[C]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.containers)
}

// Close refuses new sandboxes and containers from now on and returns the
// containers; ok is false when the registry was closed already.
func (r *Registry[C]) Close() (cs []C, ok bool) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, false
	}
	r.closed = true
	r.mu.Unlock()
	return r.Containers(), true
}
