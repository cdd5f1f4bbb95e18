package edgeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/nats-io/nats.go"
)

// copyMaxBytes bounds the file contents of one copy (client.MaxCopyBytes;
// tests lower it).
var copyMaxBytes atomic.Int64

func init() { copyMaxBytes.Store(client.MaxCopyBytes) }

// RootFSer is implemented by runtimes that can tell where a container's
// root filesystem is on the host. Without it, an OCI container's is found
// where runtime/oci makes it: <sandbox dir>/containers/<id>/rootfs.
type RootFSer interface {
	ContainerRootFS(ctx context.Context, containerID string) (string, error)
}

// copyTarget is the host directory tree a copy reads or writes and the
// path in it (slash-separated, "." for the tree itself).
type copyTarget struct {
	root     *os.Root
	rel      string
	cpath    string // the path in the container, for messages
	readOnly string // why writes are refused, if they are
	anyLinks bool   // links resolve inside the container: keep them all
}

func (a *Agent) handleCopy(ctx context.Context, m *nats.Msg) {
	var req client.CopyRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		respondTunnel(m, "", client.Errorf(client.CodeInvalid, "cp: decode request: %v", err))
		return
	}
	if req.Inbox == "" {
		respondTunnel(m, "", client.Errorf(client.CodeInvalid, "cp: no inbox for the data"))
		return
	}
	if req.Direction != client.CopyToPod && req.Direction != client.CopyFromPod {
		respondTunnel(m, "", client.Errorf(client.CodeInvalid, "cp: direction %q: want %q or %q", req.Direction, client.CopyToPod, client.CopyFromPod))
		return
	}
	tgt, serr := a.copyTarget(ctx, req)
	if serr != nil {
		respondTunnel(m, "", serr)
		return
	}
	defer tgt.root.Close()
	if req.Direction == client.CopyFromPod {
		a.copyFrom(ctx, m, req.Inbox, tgt)
		return
	}
	a.copyTo(ctx, m, req.Inbox, tgt)
}

// copyFrom sends the tar stream of the target.
func (a *Agent) copyFrom(ctx context.Context, m *nats.Msg, inbox string, tgt copyTarget) {
	if tgt.cpath == "/" {
		respondTunnel(m, "", client.Errorf(client.CodeInvalid, "cp: copying the whole root filesystem is not supported; name a directory"))
		return
	}
	if _, err := tgt.root.Lstat(tgt.rel); err != nil {
		respondTunnel(m, "", copyError(tgt.cpath, err))
		return
	}
	t, closed, ok := a.acceptTunnel(m, client.NodeVerbCopy, inbox, "cp")
	if !ok {
		return
	}
	defer closed()
	pr, pw := io.Pipe()
	go func() {
		err := client.WriteTar(pw, tgt.root, tgt.rel, path.Base(tgt.cpath), copyMaxBytes.Load())
		if err != nil {
			pw.CloseWithError(copyError(tgt.cpath, err))
			return
		}
		pw.Close()
	}()
	err := t.Run(ctx, pr, io.Discard)
	pr.CloseWithError(io.ErrClosedPipe) // stops the tar writer if Run failed
	if err != nil {
		a.log.Debug("cp from pod ended", "path", tgt.cpath, "err", err)
	}
}

// copyTo extracts the client's tar stream at the target: into it when it
// is a directory, else under its name in its parent directory.
func (a *Agent) copyTo(ctx context.Context, m *nats.Msg, inbox string, tgt copyTarget) {
	if tgt.readOnly != "" {
		respondTunnel(m, "", client.Errorf(client.CodeForbidden, "cp: cannot write %s: %s", tgt.cpath, tgt.readOnly))
		return
	}
	dir, top := tgt.rel, ""
	st, err := tgt.root.Stat(tgt.rel)
	switch {
	case err == nil && st.IsDir():
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		respondTunnel(m, "", copyError(tgt.cpath, err))
		return
	default:
		if tgt.rel == "." {
			respondTunnel(m, "", client.Errorf(client.CodeInvalid, "cp: %s is not a directory", tgt.cpath))
			return
		}
		dir, top = path.Dir(tgt.rel), path.Base(tgt.rel)
		pst, err := tgt.root.Stat(dir)
		if err != nil {
			respondTunnel(m, "", copyError(path.Dir(tgt.cpath), err))
			return
		}
		if !pst.IsDir() {
			respondTunnel(m, "", client.Errorf(client.CodeInvalid, "cp: %s is not a directory", path.Dir(tgt.cpath)))
			return
		}
	}
	t, closed, ok := a.acceptTunnel(m, client.NodeVerbCopy, inbox, "cp")
	if !ok {
		return
	}
	defer closed()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		skipped, err := client.ExtractTar(pr, tgt.root, dir, top, client.ExtractOptions{Limit: copyMaxBytes.Load(), AnyLinks: tgt.anyLinks})
		if err != nil {
			err = copyError(tgt.cpath, err)
			pr.CloseWithError(err)
		} else {
			io.Copy(io.Discard, pr) // the end of the stream, after the archive
		}
		if len(skipped) > 0 {
			a.log.Info("cp: entries not copied", "path", tgt.cpath, "skipped", skipped)
		}
		done <- err
	}()
	// The agent's side of the stream ends when everything is written (or
	// ends with the extraction's error): the client then knows the copy
	// is complete.
	err = t.Run(ctx, &waitReader{done: done}, client.PipeCloser{PipeWriter: pw})
	pw.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		a.log.Debug("cp to pod ended", "path", tgt.cpath, "err", err)
	}
}

// waitReader is empty: it returns the outcome of done (io.EOF for nil)
// once there is one.
type waitReader struct {
	done chan error
	err  error
}

func (r *waitReader) Read([]byte) (int, error) {
	if r.err == nil {
		err := <-r.done
		if err == nil {
			err = io.EOF
		}
		r.err = err
	}
	return 0, r.err
}

// copyTarget maps the container path of req onto the host: a path under
// one of the container's volume mounts is in that volume; any other is in
// the root filesystem of an OCI container. A wasm container has no root
// filesystem of its own: only its volumes can be copied to or from.
func (a *Agent) copyTarget(ctx context.Context, req client.CopyRequest) (copyTarget, *client.StatusError) {
	if req.Path == "" {
		return copyTarget{}, client.Errorf(client.CodeInvalid, "cp: a path in the container is required")
	}
	cpath := path.Clean("/" + req.Path)
	w := a.worker(req.Namespace, req.Pod)
	if w == nil {
		return copyTarget{}, client.Errorf(client.CodeNotFound, "pod %q not found on node %s", req.Pod, a.cfg.NodeName)
	}
	pod := w.pod()
	name := req.Container
	if name == "" {
		if len(pod.Spec.Containers) == 0 {
			return copyTarget{}, client.Errorf(client.CodeInvalid, "pod %q has no containers", req.Pod)
		}
		name = pod.Spec.Containers[0].Name
	}
	var spec *manifests.Container
	for _, list := range [][]manifests.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				spec = &list[i]
			}
		}
	}
	if spec == nil {
		return copyTarget{}, client.Errorf(client.CodeInvalid, "container %s is not valid for pod %s", name, req.Pod)
	}
	handler := w.handler(pod)
	tgt := copyTarget{cpath: cpath}
	host, rel, vm, serr := a.copyVolume(ctx, w, pod, spec, cpath)
	switch {
	case serr != nil:
		return copyTarget{}, serr
	case vm != nil:
		tgt.rel = rel
		if vm.ReadOnly {
			tgt.readOnly = fmt.Sprintf("%s is in volume %s, mounted read-only", cpath, vm.Name)
		}
	case handler == manifests.RuntimeWasm:
		var mounts []string
		for _, m := range spec.VolumeMounts {
			mounts = append(mounts, m.MountPath)
		}
		list := "it has none"
		if len(mounts) > 0 {
			list = "its volumes are mounted at " + strings.Join(mounts, ", ")
		}
		return copyTarget{}, client.Errorf(client.CodeInvalid,
			"%s is not in a volume of wasm container %s: a wasm container sees only its volumes, and %s", cpath, name, list)
	default:
		var serr *client.StatusError
		if host, serr = a.containerRootFS(ctx, w, pod, handler, name); serr != nil {
			return copyTarget{}, serr
		}
		tgt.rel = strings.TrimPrefix(cpath, "/")
		if tgt.rel == "" {
			tgt.rel = "."
		}
		tgt.anyLinks = true
		if sc := spec.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
			tgt.readOnly = fmt.Sprintf("container %s has a read-only root filesystem", name)
		}
	}
	root, err := os.OpenRoot(host)
	if err != nil {
		return copyTarget{}, client.Errorf(client.CodeUnavailable, "cp: open the filesystem of %s: %v", cpath, err)
	}
	tgt.root = root
	return tgt, nil
}

// copyVolume finds the volume mount of spec holding cpath (the longest
// mount path that contains it) and the host directory behind it. vm is
// nil when cpath is in no volume.
func (a *Agent) copyVolume(ctx context.Context, w *podWorker, pod *manifests.Pod, spec *manifests.Container, cpath string) (host, rel string, vm *manifests.VolumeMount, serr *client.StatusError) {
	best := -1
	for i, m := range spec.VolumeMounts {
		mp := path.Clean("/" + m.MountPath)
		if (cpath == mp || mp == "/" || strings.HasPrefix(cpath, mp+"/")) && (best < 0 || len(mp) > len(path.Clean("/"+spec.VolumeMounts[best].MountPath))) {
			best = i
		}
	}
	if best < 0 {
		return "", "", nil, nil
	}
	m := spec.VolumeMounts[best]
	vm = &m
	rel = strings.TrimPrefix(strings.TrimPrefix(cpath, path.Clean("/"+m.MountPath)), "/")
	if rel == "" {
		rel = "."
	}
	var v *manifests.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == m.Name {
			v = &pod.Spec.Volumes[i]
		}
	}
	if v == nil {
		return "", "", nil, client.Errorf(client.CodeInvalid, "volume %q of %s not found in pod %s", m.Name, cpath, pod.Name)
	}
	dir := filepath.Join(a.podDir(pod), "volumes", v.Name)
	var err error
	switch {
	case v.EmptyDir != nil:
		host = dir
	case v.HostPath != nil:
		if host, err = a.cfg.HostPaths.Check(v.Name, v.HostPath.Path); err != nil {
			return "", "", nil, client.Errorf(client.CodeForbidden, "cp: %v", err)
		}
	case v.ConfigMap != nil, v.Secret != nil:
		host = dir
		vm.ReadOnly = true // written by the agent from the object
	default:
		// persistentVolumeClaim: its directory is resolved by the pod's
		// worker (volumes_pvc.go), not from here yet.
		return "", "", nil, client.Errorf(client.CodeInvalid, "cp: %s is in volume %s, whose source cp does not support yet (it supports emptyDir, hostPath, configMap and secret)", cpath, v.Name)
	}
	if m.SubPath != "" {
		if host, err = confineSubPath(v.Name, host, m.SubPath); err != nil {
			return "", "", nil, client.Errorf(client.CodeForbidden, "cp: %v", err)
		}
	}
	if _, err := os.Stat(host); err != nil {
		return "", "", nil, client.Errorf(client.CodeUnavailable, "cp: volume %s of pod %s is not ready: %v", v.Name, pod.Name, err)
	}
	return host, rel, vm, nil
}

// containerRootFS is the host directory of a running OCI container's root
// filesystem.
func (a *Agent) containerRootFS(ctx context.Context, w *podWorker, pod *manifests.Pod, handler, name string) (string, *client.StatusError) {
	rt := a.cfg.Runtimes[handler]
	if rt == nil {
		return "", client.Errorf(client.CodeUnavailable, "runtime handler %q is not available on node %s", handler, a.cfg.NodeName)
	}
	w.mu.Lock()
	id := w.rec.Containers[name].ID
	w.mu.Unlock()
	notRunning := client.Errorf(client.CodeInvalid, "container %s in pod %s is not running", name, pod.Name)
	if id == "" {
		return "", notRunning
	}
	if st, err := rt.ContainerStatus(ctx, id); err != nil || st.State != runtime.StateRunning {
		return "", notRunning
	}
	if rf, ok := rt.(RootFSer); ok {
		dir, err := rf.ContainerRootFS(ctx, id)
		if err != nil {
			return "", client.Errorf(client.CodeUnavailable, "cp: root filesystem of container %s: %v", name, err)
		}
		return dir, nil
	}
	if handler != manifests.RuntimeOCI {
		return "", client.Errorf(client.CodeInvalid, "cp outside volumes is not supported for %s containers", handler)
	}
	dir := filepath.Join(a.podDir(pod), "sandbox", "containers", id, "rootfs")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", client.Errorf(client.CodeUnavailable, "cp: cannot find the root filesystem of container %s (%s)", name, dir)
	}
	return dir, nil
}

// copyError turns a filesystem error about cpath into an API error.
func copyError(cpath string, err error) *client.StatusError {
	var se *client.StatusError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, fs.ErrNotExist):
		return client.Errorf(client.CodeNotFound, "%s: no such file or directory", cpath)
	case errors.Is(err, fs.ErrPermission):
		return client.Errorf(client.CodeForbidden, "%s: permission denied", cpath)
	case strings.Contains(err.Error(), "path escapes from parent"):
		return client.Errorf(client.CodeForbidden, "%s: a path leads out of the container's filesystem (a symbolic link or \"..\"): %v", cpath, err)
	case errors.Is(err, client.ErrTooLarge):
		return client.Errorf(client.CodeInvalid, "%s: %v", cpath, err)
	}
	return client.Errorf(client.CodeInternal, "%s: %v", cpath, err)
}
