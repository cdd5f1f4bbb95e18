package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/internal/status"
)

// pollInterval is how often waits re-read a container's state.
const pollInterval = 10 * time.Millisecond

// CreateContainer implements runtime.Runtime: it prepares the bundle (root
// filesystem and config.json) without starting anything.
func (r *Runtime) CreateContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (string, error) {
	sb, err := r.sandbox(sandboxID)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	r.mu.Lock()
	sbRec := sb.rec
	r.mu.Unlock()
	if !sbRec.Ready {
		return "", fmt.Errorf("create container %q: sandbox %s: %w: %w", cfg.Name, sandboxID, runtime.ErrState, errClosedSandbox)
	}
	if cfg.Name == "" {
		return "", fmt.Errorf("create container: %w: name required", runtime.ErrInvalid)
	}
	img, err := readImage(cfg.Image)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	id := newID()
	imageRootfs := filepath.Join(cfg.Image, "rootfs")
	sp, err := buildSpec(specInput{
		cfg:      cfg,
		image:    img,
		rootfs:   imageRootfs,
		hostname: sbRec.Config.Hostname,
		netns:    filepath.Join(sbRec.Dir, netnsFile),
		ipcns:    filepath.Join(sbRec.Dir, ipcnsFile),
		shm:      filepath.Join(sbRec.Dir, shmDir),
		etcFiles: map[string]string{
			"/etc/hosts":       filepath.Join(sbRec.Dir, hostsFile),
			"/etc/resolv.conf": filepath.Join(sbRec.Dir, resolvConfFile),
			"/etc/hostname":    filepath.Join(sbRec.Dir, hostnameFile),
		},
		cgroupsPath: cgroupParent(sandboxID) + "/" + id,
		swap:        swapAccounting(),
	})
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	logPath := cfg.LogPath
	switch {
	case logPath != "" && !filepath.IsAbs(logPath) && sbRec.Config.LogDirectory != "":
		logPath = filepath.Join(sbRec.Config.LogDirectory, logPath)
	case logPath == "" && sbRec.Config.LogDirectory != "":
		logPath = filepath.Join(sbRec.Config.LogDirectory, cfg.Name+".log")
	}
	bundle := filepath.Join(sbRec.Dir, bundlesDir, id)
	rec := containerRecord{
		ID:          id,
		SandboxID:   sandboxID,
		Config:      cfg,
		Labels:      cloneLabels(sbRec.Config.Labels, cfg.Labels),
		LogPath:     logPath,
		Bundle:      bundle,
		CgroupsPath: sp.Linux.CgroupsPath,
		CreatedAt:   time.Now(),
	}
	rec.Config.Labels = maps.Clone(cfg.Labels)
	dir := filepath.Join(r.root, containersDir, id)
	cleanup := func() {
		_ = unmount(filepath.Join(bundle, "rootfs"))
		_ = os.RemoveAll(bundle)
		_ = os.RemoveAll(dir)
	}
	if rec.Overlay, err = prepareRootfs(imageRootfs, bundle); err != nil {
		cleanup()
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	sp.Root.Path = "rootfs"
	if err := writeSpec(bundle, sp); err != nil {
		cleanup()
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		cleanup()
		return "", fmt.Errorf("create container %q: state directory: %w", cfg.Name, err)
	}
	// Not synced: a process crash keeps it (page cache); a power cut kills
	// the container anyway, and recovery forgets a torn record.
	if err := replaceJSON(filepath.Join(dir, containerFile), rec); err != nil {
		cleanup()
		return "", fmt.Errorf("create container %q: %w", cfg.Name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sandboxes[sandboxID]; !ok {
		cleanup()
		return "", fmt.Errorf("create container %q: sandbox %s: %w", cfg.Name, sandboxID, runtime.ErrNotFound)
	}
	r.containers[id] = &container{rec: rec, dir: dir}
	return id, nil
}

// prepareRootfs makes bundle/rootfs: an overlay over the image's rootfs
// with the writable layer in bundle/upper, or a copy of it where overlayfs
// cannot be mounted.
func prepareRootfs(imageRootfs, bundle string) (overlay bool, err error) {
	target := filepath.Join(bundle, "rootfs")
	upper, work := filepath.Join(bundle, "upper"), filepath.Join(bundle, "work")
	if err := mountOverlay(imageRootfs, upper, work, target); err == nil {
		return true, nil
	}
	_ = os.RemoveAll(upper)
	_ = os.RemoveAll(work)
	if err := os.RemoveAll(target); err != nil {
		return false, fmt.Errorf("root filesystem: %w", err)
	}
	if err := copyTree(imageRootfs, target); err != nil {
		return false, fmt.Errorf("root filesystem: %w", err)
	}
	return false, nil
}

// swapAccounting tells whether the memory controller can limit swap.
func swapAccounting() bool {
	mounts, err := cgroupMounts()
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if !m.v2 && m.controllers["memory"] {
			_, err := os.Stat(filepath.Join(m.point, "memory.memsw.limit_in_bytes"))
			return err == nil
		}
	}
	for _, m := range mounts {
		if m.v2 {
			data, _ := os.ReadFile(filepath.Join(m.point, "cgroup.controllers"))
			return strings.Contains(string(data), "memory")
		}
	}
	return false
}

// StartContainer implements runtime.Runtime: it starts the container's
// shim and returns once the container's process runs. A container that
// cannot start (bad command) is reported exited with reason StartError,
// and the error wraps runtime.ErrInvalid.
func (r *Runtime) StartContainer(ctx context.Context, containerID string) error {
	c, err := r.container(containerID)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, _, err := r.status(ctx, c)
	if err != nil {
		return fmt.Errorf("start container %s: %w", containerID, err)
	}
	if st.State != runtime.StateCreated {
		return fmt.Errorf("start container %s (%s): %w: container is %s", st.Name, containerID, runtime.ErrState, st.State)
	}
	sb, err := r.sandbox(c.rec.SandboxID)
	if err != nil {
		return fmt.Errorf("start container %s (%s): %w", st.Name, containerID, err)
	}
	r.mu.Lock()
	ready := sb.rec.Ready
	if ready {
		c.rec.StartRequested, c.starting = true, true
	}
	rec := c.rec
	r.mu.Unlock()
	if !ready {
		return fmt.Errorf("start container %s (%s): %w: %w", st.Name, containerID, runtime.ErrState, errClosedSandbox)
	}
	defer func() {
		r.mu.Lock()
		c.starting = false
		r.mu.Unlock()
	}()
	if err := r.startShim(ctx, c.dir, rec); err != nil {
		return fmt.Errorf("start container %s (%s): %w", st.Name, containerID, err)
	}
	return nil
}

// startShim runs the shim for a container (the spare one, see spawnShim)
// and waits for its report.
func (r *Runtime) startShim(ctx context.Context, dir string, rec containerRecord) error {
	// Not synced: after a power cut the container is gone whatever the
	// record says, and recovery forgets a torn one.
	if err := replaceJSON(filepath.Join(dir, containerFile), rec); err != nil {
		return err
	}
	p, err := r.takeShim(shimConfig{
		Dir: dir, Runc: r.runc, RuncRoot: filepath.Join(r.root, runcDir), ID: rec.ID, Bundle: rec.Bundle,
		LogPath: rec.LogPath, LogMaxBytes: rec.Config.LogMaxBytes, LogMaxFiles: rec.Config.LogMaxFiles,
	})
	if err != nil {
		return err
	}
	defer p.status.Close()
	// Keep a spare for the next start once this one is done with the CPU.
	defer func() { go r.refillShim() }()
	type result struct {
		rep shimReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		data, err := io.ReadAll(p.status)
		switch {
		case err != nil:
			res.err = err
		case len(bytes.TrimSpace(data)) == 0:
			res.err = errors.New("shim ended without reporting")
		default:
			res.err = json.Unmarshal(data, &res.rep)
		}
		done <- res
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		// Give up on this start: end the shim and whatever it started (it
		// leads its own process group); RemoveContainer deletes what runc
		// may have created.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = writeJSON(filepath.Join(dir, exitFile), startError("start abandoned: "+ctx.Err().Error()))
		return fmt.Errorf("wait for shim: %w", ctx.Err())
	}
	if res.err != nil {
		msg := fmt.Sprintf("shim failed: %v: %s", res.err, tail(filepath.Join(dir, shimLogFile), 512))
		_ = writeJSON(filepath.Join(dir, exitFile), startError(msg))
		return errors.New(msg)
	}
	if res.rep.Error != "" {
		return fmt.Errorf("%w: %s", runtime.ErrInvalid, res.rep.Error)
	}
	return nil
}

func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// tail is the end of a file, for error messages.
func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return strings.TrimSpace(string(data))
}

// StopContainer implements runtime.Runtime: SIGTERM, then SIGKILL after
// timeout, then it waits (bounded by ctx) for the exit to be recorded. A
// created container that never started is marked exited.
func (r *Runtime) StopContainer(ctx context.Context, containerID string, timeout time.Duration) error {
	c, err := r.container(containerID)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, _, err := r.status(ctx, c)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", containerID, err)
	}
	switch st.State {
	case runtime.StateExited:
		return nil
	case runtime.StateCreated:
		now := time.Now()
		if err := writeJSON(filepath.Join(c.dir, exitFile), exitRecord{
			ExitCode: 128 + int32(syscall.SIGKILL), FinishedAt: now, StartedAt: now,
			Reason: runtime.ReasonKilled, Message: "stopped before it started",
		}); err != nil {
			return fmt.Errorf("stop container %s: %w", containerID, err)
		}
		return nil
	}
	if timeout > 0 {
		// Errors are ignored: the process may have exited already.
		_, _ = r.runcCmd(ctx, "kill", containerID, "TERM")
		wctx, cancel := context.WithTimeout(ctx, timeout)
		err := r.waitExited(wctx, c)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stop container %s: %w", containerID, ctx.Err())
		}
	}
	r.mu.Lock()
	c.rec.Killed = true
	rec := c.rec
	r.mu.Unlock()
	// Not synced (see startShim): the stop of one pod should not hold up
	// the disk for the start of the next.
	if err := replaceJSON(filepath.Join(c.dir, containerFile), rec); err != nil {
		return fmt.Errorf("stop container %s: %w", containerID, err)
	}
	_, _ = r.runcCmd(ctx, "kill", containerID, "KILL")
	if err := r.waitExited(ctx, c); err != nil {
		return fmt.Errorf("stop container %s: wait for exit: %w", containerID, err)
	}
	return nil
}

// waitExited polls until the container has exited.
func (r *Runtime) waitExited(ctx context.Context, c *container) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		st, _, err := r.status(ctx, c)
		if err != nil {
			return err
		}
		if st.State == runtime.StateExited {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RemoveContainer implements runtime.Runtime: it deletes the runc
// container, the bundle with its writable layer and the state. Removing a
// running container is ErrState; removing a missing one succeeds.
func (r *Runtime) RemoveContainer(ctx context.Context, containerID string) error {
	c, err := r.container(containerID)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, _, err := r.status(ctx, c)
	if err != nil {
		return fmt.Errorf("remove container %s: %w", containerID, err)
	}
	if st.State == runtime.StateRunning {
		return fmt.Errorf("remove container %s (%s): %w: container is running", st.Name, containerID, runtime.ErrState)
	}
	if out, err := r.runcCmd(ctx, "delete", "--force", containerID); err != nil && !errNoRuncContainer(out) {
		return fmt.Errorf("remove container %s: %w", containerID, err)
	}
	if err := unmount(filepath.Join(c.rec.Bundle, "rootfs")); err != nil {
		return fmt.Errorf("remove container %s: %w", containerID, err)
	}
	if err := os.RemoveAll(c.rec.Bundle); err != nil {
		return fmt.Errorf("remove container %s: bundle: %w", containerID, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove container %s: state: %w", containerID, err)
	}
	r.mu.Lock()
	delete(r.containers, containerID)
	r.mu.Unlock()
	return nil
}

// ContainerStatus implements runtime.Runtime.
func (r *Runtime) ContainerStatus(ctx context.Context, containerID string) (runtime.ContainerStatus, error) {
	c, err := r.container(containerID)
	if err != nil {
		return runtime.ContainerStatus{}, fmt.Errorf("status: %w", err)
	}
	st, _, err := r.status(ctx, c)
	if err != nil {
		return runtime.ContainerStatus{}, fmt.Errorf("status of container %s: %w", containerID, err)
	}
	return st, nil
}

// ListContainers implements runtime.Runtime, oldest first.
func (r *Runtime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]runtime.ContainerStatus, error) {
	r.mu.Lock()
	cs := make([]*container, 0, len(r.containers))
	for _, c := range r.containers {
		if filter.SandboxID == "" || c.rec.SandboxID == filter.SandboxID {
			cs = append(cs, c)
		}
	}
	r.mu.Unlock()
	all := make([]runtime.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		st, _, err := r.status(ctx, c)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		all = append(all, st)
	}
	return status.Select(all, filter), nil
}

// status works out a container's status from its records: exit.json once
// it has exited; started.json and a live shim while it runs; `runc state`
// when the shim is gone but the exit was not recorded (the container may
// still run: its exit is then recorded when runc sees it stopped, with an
// unknown exit code).
func (r *Runtime) status(ctx context.Context, c *container) (runtime.ContainerStatus, *startedRecord, error) {
	r.mu.Lock()
	rec, starting := c.rec, c.starting
	r.mu.Unlock()
	st := runtime.ContainerStatus{
		ID:        rec.ID,
		SandboxID: rec.SandboxID,
		Name:      rec.Config.Name,
		Image:     rec.Config.Image,
		State:     runtime.StateCreated,
		CreatedAt: rec.CreatedAt,
		Labels:    maps.Clone(rec.Labels),
		LogPath:   rec.LogPath,
	}
	var (
		ex      exitRecord
		started startedRecord
	)
	exited, err := readJSON(filepath.Join(c.dir, exitFile), &ex)
	if err != nil {
		return st, nil, err
	}
	running, err := readJSON(filepath.Join(c.dir, startedFile), &started)
	if syntax := (*json.SyntaxError)(nil); errors.As(err, &syntax) {
		// Torn by a power cut (the shim does not sync it): the container
		// died with the machine, before or after it started.
		running, err = false, nil
	}
	if err != nil {
		return st, nil, err
	}
	if !exited && running {
		if start, alive := processStart(started.ShimPid); alive && start == started.ShimStart {
			st.State, st.StartedAt = runtime.StateRunning, started.StartedAt
			return st, &started, nil
		}
		// The shim is gone. It may have recorded the exit just now.
		if exited, err = readJSON(filepath.Join(c.dir, exitFile), &ex); err != nil {
			return st, nil, err
		}
		if !exited {
			alive, err := r.runcRunning(ctx, rec.ID)
			if err != nil {
				return st, nil, err
			}
			if alive {
				st.State, st.StartedAt = runtime.StateRunning, started.StartedAt
				return st, &started, nil
			}
			ex = exitRecord{
				ExitCode: exitUnknown, FinishedAt: time.Now(), Reason: runtime.ReasonError,
				Message: "exit status unknown: the shim ended before the container",
			}
			if err := writeJSON(filepath.Join(c.dir, exitFile), ex); err != nil {
				return st, nil, err
			}
			exited = true
		}
	}
	if !exited && rec.StartRequested && !starting {
		// A start was interrupted (agent restart) before the shim reported.
		ex = startError("start interrupted")
		if err := writeJSON(filepath.Join(c.dir, exitFile), ex); err != nil {
			return st, nil, err
		}
		exited = true
	}
	if !exited {
		return st, nil, nil
	}
	st.State = runtime.StateExited
	st.StartedAt = started.StartedAt
	if !running {
		st.StartedAt = ex.StartedAt
	}
	st.FinishedAt, st.ExitCode = ex.FinishedAt, ex.ExitCode
	st.Reason, st.Message = exitReason(ex, rec.Killed)
	return st, nil, nil
}

// exitReason is the Kubernetes reason of an exit.
func exitReason(ex exitRecord, killed bool) (string, string) {
	const sigkill = 128 + int32(syscall.SIGKILL)
	switch {
	case ex.Reason != "":
		return ex.Reason, ex.Message
	case ex.OOMKilled && ex.ExitCode == sigkill:
		return runtime.ReasonOOMKilled, "memory limit reached"
	case ex.ExitCode == 0:
		return runtime.ReasonCompleted, ""
	case killed && ex.ExitCode == sigkill:
		return runtime.ReasonKilled, "stopped"
	}
	return runtime.ReasonError, ""
}

// runcRunning asks runc whether the container's process still exists.
func (r *Runtime) runcRunning(ctx context.Context, id string) (bool, error) {
	out, err := r.runcCmd(ctx, "state", id)
	if err != nil {
		if errNoRuncContainer(out) {
			return false, nil
		}
		return false, err
	}
	var s struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return false, fmt.Errorf("runc state: %w", err)
	}
	return s.Status == "running" || s.Status == "paused" || s.Status == "created", nil
}
