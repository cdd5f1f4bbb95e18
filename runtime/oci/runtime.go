// Package oci runs OCI containers with runc. A pod sandbox is a network
// namespace (loopback only) with /etc/hosts, /etc/resolv.conf and
// /etc/hostname files its containers share. Each container is an OCI bundle
// (overlayfs over the unpacked image, or a copy where overlayfs cannot be
// mounted) run by a shim: the agent binary re-executed (MaybeRunShim), which
// holds the container's output, writes its CRI log and records its exit.
// Containers outlive the agent; all state is on disk under Options.Root, so
// a new Runtime on the same Root picks them up.
//
// Shims run in their own session but stay in the agent's cgroup: under
// systemd the agent's unit needs KillMode=process, or a restart of the agent
// kills its containers' shims (the containers themselves, in their own
// cgroups under /edge, keep running; their exit codes are then lost).
//
// Defaults follow Docker and Kubernetes: Docker's capability set,
// no_new_privs, runc's masked and read-only paths, RLIMIT_NOFILE 1024,
// cgroups at /edge/<sandbox>/<container> (cgroupfs driver).
package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/edgeorch/edgeorch/runtime"
)

// HandlerName is the runtime handler name this runtime advertises.
const HandlerName = "oci"

// Options configure New.
type Options struct {
	// Root is the state directory (e.g. <agent-data>/oci).
	Root string
	// RuncPath is the runc binary; empty looks up "runc" in PATH.
	RuncPath string
}

// Runtime implements runtime.Runtime, runtime.Execer and runtime.Statser.
type Runtime struct {
	root string
	runc string

	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	containers map[string]*container

	shimMu    sync.Mutex
	spare     *shimProc // a shim waiting for the next container (shimproc.go)
	refilling bool
	closed    bool
}

var (
	_ runtime.Runtime = (*Runtime)(nil)
	_ runtime.Execer  = (*Runtime)(nil)
)

type sandbox struct {
	mu  sync.Mutex // serialises stop and remove
	rec sandboxRecord
}

type container struct {
	mu       sync.Mutex // serialises start, stop and remove
	rec      containerRecord
	dir      string // state directory
	starting bool   // a StartContainer of this process is under way
}

// New opens (creating) the state under opts.Root and recovers the
// sandboxes and containers recorded there. It fails with an error wrapping
// runtime.ErrUnavailable when runc cannot be found or the host cannot run
// containers (not root).
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("oci runtime: %w: no state directory", runtime.ErrUnavailable)
	}
	runc := opts.RuncPath
	if runc == "" {
		runc = "runc"
	}
	path, err := exec.LookPath(runc)
	if err != nil {
		return nil, fmt.Errorf("oci runtime: %w: runc: %w", runtime.ErrUnavailable, err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("oci runtime: %w: needs root", runtime.ErrUnavailable)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("oci runtime: state directory: %w", err)
	}
	for _, d := range []string{sandboxesDir, containersDir, runcDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("oci runtime: %w: state directory: %w", runtime.ErrUnavailable, err)
		}
	}
	r := &Runtime{root: root, runc: path, sandboxes: map[string]*sandbox{}, containers: map[string]*container{}}
	if err := r.recover(ctx); err != nil {
		return nil, fmt.Errorf("oci runtime: recover state in %s: %w", root, err)
	}
	return r, nil
}

// recover loads the records of a previous run. Running containers are
// left alone: their shims still watch them, and ContainerStatus asks runc
// about those whose shim is gone.
func (r *Runtime) recover(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(r.root, sandboxesDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(id, ".") {
			continue
		}
		var rec sandboxRecord
		if ok, err := readJSON(filepath.Join(r.root, sandboxesDir, e.Name()), &rec); err != nil || !ok {
			return fmt.Errorf("sandbox %s: %w", id, err)
		}
		r.sandboxes[rec.ID] = &sandbox{rec: rec}
	}
	entries, err = os.ReadDir(filepath.Join(r.root, containersDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		dir := filepath.Join(r.root, containersDir, e.Name())
		var rec containerRecord
		ok, err := readJSON(filepath.Join(dir, containerFile), &rec)
		if syntax := (*json.SyntaxError)(nil); errors.As(err, &syntax) {
			// Torn by a power cut (CreateContainer does not sync it): the
			// container died with the machine, forget it.
			_, _ = r.runcCmd(ctx, "delete", "--force", e.Name())
			ok, err = false, nil
		}
		if err != nil {
			return fmt.Errorf("container %s: %w", e.Name(), err)
		}
		if !ok {
			// Creation was interrupted before the record was written.
			_ = os.RemoveAll(dir)
			continue
		}
		r.containers[rec.ID] = &container{rec: rec, dir: dir}
		// Settle containers whose shim died meanwhile.
		if _, _, err := r.status(ctx, r.containers[rec.ID]); err != nil {
			return fmt.Errorf("container %s: %w", rec.ID, err)
		}
	}
	return nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return HandlerName }

// Close implements runtime.Runtime: it ends the spare shim. Containers
// keep running.
func (r *Runtime) Close(ctx context.Context) error {
	r.dropSpareShim()
	return nil
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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

func (r *Runtime) sandbox(id string) (*sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, ok := r.sandboxes[id]
	if !ok {
		return nil, fmt.Errorf("sandbox %s: %w", id, runtime.ErrNotFound)
	}
	return sb, nil
}

// containersOf lists a sandbox's containers.
func (r *Runtime) containersOf(sandboxID string) []*container {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cs []*container
	for _, c := range r.containers {
		if c.rec.SandboxID == sandboxID {
			cs = append(cs, c)
		}
	}
	return cs
}

// runcCmd runs runc with the runtime's root and returns its combined
// output.
func (r *Runtime) runcCmd(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.runc, append([]string{"--root", filepath.Join(r.root, runcDir)}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("runc %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// errNoRuncContainer tells whether runc failed because it does not know
// the container.
func errNoRuncContainer(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "does not exist") || strings.Contains(s, "not exist")
}

func cloneLabels(sb, c map[string]string) map[string]string {
	labels := maps.Clone(sb)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, c)
	return labels
}

var errClosedSandbox = errors.New("sandbox is stopped")
