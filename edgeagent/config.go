package edgeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/envvar"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

// Labels the agent puts on every container, as the kubelet does.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
)

// containerConfig builds the runtime configuration of a container: its
// environment (configmaps and secrets read through the API, kept in the
// local state for offline starts), expanded command and args, limits,
// mounts and log file.
func (w *podWorker) containerConfig(ctx context.Context, pod *manifests.Pod, handler string, spec *manifests.Container, c *ctr, image string) (runtime.ContainerConfig, error) {
	src := &podSources{w: w}
	env, err := envvar.Resolve(ctx, pod, spec, src, envvar.PodFields{HostIP: w.a.cfg.Address, PodIP: w.ip(),
		// enableServiceLinks (not in PodSpec yet) defaults to true.
		Services: w.a.svc.forNamespace(pod.Namespace)})
	if err != nil {
		return runtime.ContainerConfig{}, err
	}
	mounts, err := w.mounts(ctx, pod, spec, src)
	if err != nil {
		return runtime.ContainerConfig{}, err
	}
	cfg := runtime.ContainerConfig{
		Name:        spec.Name,
		Image:       image,
		Command:     envvar.ExpandAll(spec.Command, env),
		Args:        envvar.ExpandAll(spec.Args, env),
		Env:         env,
		WorkingDir:  spec.WorkingDir,
		Mounts:      mounts,
		LogPath:     w.logPath(pod, spec.Name, c.restartCount),
		LogMaxBytes: logMaxBytes,
		LogMaxFiles: logMaxFiles,
		Labels: map[string]string{
			labelPodName:       pod.Name,
			labelPodNamespace:  pod.Namespace,
			labelPodUID:        pod.UID,
			labelContainerName: spec.Name,
		},
		Stdin: spec.Stdin,
		TTY:   spec.TTY,
	}
	if q, ok := spec.Resources.Limits["memory"]; ok {
		v, err := parseQuantity(q)
		if err != nil {
			return runtime.ContainerConfig{}, fmt.Errorf("resources.limits.memory: %w", err)
		}
		cfg.MemoryLimitBytes = v.Value()
	}
	if q, ok := spec.Resources.Limits["cpu"]; ok {
		v, err := parseQuantity(q)
		if err != nil {
			return runtime.ContainerConfig{}, fmt.Errorf("resources.limits.cpu: %w", err)
		}
		cfg.CPUMilli = v.MilliValue()
	}
	if handler == manifests.RuntimeWasm {
		cfg.Ports = wasmPorts(spec.Ports)
	}
	if handler == manifests.RuntimeOCI && !w.a.cfg.PassImages {
		sec, err := securityConfig(pod, spec, image)
		if err != nil {
			return runtime.ContainerConfig{}, err
		}
		cfg.Security = sec
		cfg.PidsLimit = defaultPidsLimit
	}
	return cfg, nil
}

// wasmPorts are the TCP ports a wasm container declares: the runtime opens
// a listener for each (wasm pods use the host network) and preopens it for
// the module. Other protocols cannot be served by a wasm module and are left
// out.
func wasmPorts(ports []manifests.ContainerPort) []runtime.PortMapping {
	var out []runtime.PortMapping
	for _, p := range ports {
		if p.Protocol == "" || strings.EqualFold(p.Protocol, "TCP") {
			out = append(out, runtime.PortMapping{ContainerPort: p.ContainerPort, Protocol: "TCP"})
		}
	}
	return out
}

// mounts prepares the pod volumes a container mounts: emptyDir under the
// pod directory, hostPath where the node's HostPathPolicy allows it,
// configMap and secret keys written as files. A subPath must stay inside
// its volume.
func (w *podWorker) mounts(ctx context.Context, pod *manifests.Pod, spec *manifests.Container, src *podSources) ([]runtime.Mount, error) {
	vols := map[string]manifests.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []runtime.Mount
	for _, vm := range spec.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q not found", vm.Name)
		}
		host, err := w.volumePath(ctx, pod, v, src)
		if err != nil {
			return nil, err
		}
		if vm.SubPath != "" {
			if host, err = confineSubPath(v.Name, host, vm.SubPath); err != nil {
				return nil, err
			}
		}
		readOnly := vm.ReadOnly || (v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ReadOnly)
		out = append(out, runtime.Mount{HostPath: host, ContainerPath: vm.MountPath, ReadOnly: readOnly})
	}
	return out, nil
}

func (w *podWorker) volumePath(ctx context.Context, pod *manifests.Pod, v manifests.Volume, src *podSources) (string, error) {
	dir := filepath.Join(w.a.podDir(pod), "volumes", v.Name)
	switch {
	case v.HostPath != nil:
		// Only under the prefixes the node allows (--allow-host-path),
		// links resolved; the resolved path is what gets mounted.
		path, err := w.a.cfg.HostPaths.Check(v.Name, v.HostPath.Path)
		if err != nil {
			return "", err
		}
		if v.HostPath.Type == "DirectoryOrCreate" {
			if err := os.MkdirAll(path, 0o755); err != nil {
				return "", fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
		return path, nil
	case v.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("volume %s: %w", v.Name, err)
		}
		return dir, nil
	case v.ConfigMap != nil:
		files := map[string][]byte{}
		cm, err := src.ConfigMap(ctx, pod.Namespace, v.ConfigMap.Name)
		if err != nil && !(src.IsNotFound(err) && optional(v.ConfigMap.Optional)) {
			return "", err
		}
		if cm != nil {
			for k, s := range cm.Data {
				files[k] = []byte(s)
			}
			for k, b := range cm.BinaryData {
				files[k] = b
			}
		}
		return dir, writeVolume(dir, files, v.ConfigMap.Items)
	case v.Secret != nil:
		files := map[string][]byte{}
		s, err := src.Secret(ctx, pod.Namespace, v.Secret.SecretName)
		if err != nil && !(src.IsNotFound(err) && optional(v.Secret.Optional)) {
			return "", err
		}
		if s != nil {
			for k, b := range s.Data {
				files[k] = b
			}
			for k, str := range s.StringData {
				files[k] = []byte(str)
			}
		}
		return dir, writeVolume(dir, files, v.Secret.Items)
	case v.PersistentVolumeClaim != nil: // volumes_pvc.go
		return w.claimVolumePath(ctx, pod, v, src)
	}
	return "", fmt.Errorf("volume %s: no supported source", v.Name)
}

func optional(b *bool) bool { return b != nil && *b }

// writeVolume writes the keys (or the selected items) as files in dir.
func writeVolume(dir string, files map[string][]byte, items []manifests.KeyToPath) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("volume %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("volume %s: %w", dir, err)
	}
	write := func(name string, data []byte) error {
		p := filepath.Join(dir, filepath.Clean("/"+name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o644)
	}
	if len(items) > 0 {
		for _, it := range items {
			data, ok := files[it.Key]
			if !ok {
				return fmt.Errorf("volume %s: key %q not found", filepath.Base(dir), it.Key)
			}
			if err := write(it.Path, data); err != nil {
				return fmt.Errorf("volume %s: %w", filepath.Base(dir), err)
			}
		}
		return nil
	}
	for k, data := range files {
		if err := write(k, data); err != nil {
			return fmt.Errorf("volume %s: %w", filepath.Base(dir), err)
		}
	}
	return nil
}

// podSources reads configmaps and secrets through the API and remembers
// them in the pod's state; offline, the remembered copy is used.
type podSources struct {
	w *podWorker
}

func (s *podSources) get(ctx context.Context, resource, namespace, name string, out manifests.Object) error {
	key := state.RefKey(resource, name)
	obj, err := s.w.a.api.Get(ctx, resource, namespace, name)
	if err == nil {
		raw, merr := json.Marshal(obj)
		if merr != nil {
			return fmt.Errorf("encode %s %s: %w", resource, name, merr)
		}
		s.w.mu.Lock()
		if s.w.rec.Refs == nil {
			s.w.rec.Refs = map[string]json.RawMessage{}
		}
		if string(s.w.rec.Refs[key]) != string(raw) {
			s.w.rec.Refs[key] = raw
			s.w.dirty = true
		}
		s.w.mu.Unlock()
		return json.Unmarshal(raw, out)
	}
	if client.IsNotFound(err) {
		return err
	}
	s.w.mu.Lock()
	raw, ok := s.w.rec.Refs[key]
	s.w.mu.Unlock()
	if !ok {
		return fmt.Errorf("get %s %q: %w", resource, name, err)
	}
	return json.Unmarshal(raw, out)
}

func (s *podSources) ConfigMap(ctx context.Context, namespace, name string) (*manifests.ConfigMap, error) {
	var cm manifests.ConfigMap
	if err := s.get(ctx, "configmaps", namespace, name, &cm); err != nil {
		return nil, err
	}
	return &cm, nil
}

func (s *podSources) Secret(ctx context.Context, namespace, name string) (*manifests.Secret, error) {
	var sec manifests.Secret
	if err := s.get(ctx, "secrets", namespace, name, &sec); err != nil {
		return nil, err
	}
	return &sec, nil
}

func (s *podSources) IsNotFound(err error) bool { return client.IsNotFound(err) }
