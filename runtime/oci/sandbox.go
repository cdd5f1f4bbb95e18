package oci

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

// Files of a sandbox directory.
const (
	netnsFile      = "netns"
	ipcnsFile      = "ipcns"
	shmDir         = "shm"
	hostsFile      = "hosts"
	resolvConfFile = "resolv.conf"
	hostnameFile   = "hostname"
	bundlesDir     = "containers"
)

// RunPodSandbox implements runtime.Runtime: it makes the pod's network
// namespace and /etc files under the sandbox directory (cfg.Dir, or one
// under Root).
func (r *Runtime) RunPodSandbox(ctx context.Context, cfg runtime.PodSandboxConfig) (string, error) {
	id := newID()
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("run sandbox %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	if cfg.LogDirectory != "" {
		if err := os.MkdirAll(cfg.LogDirectory, 0o750); err != nil {
			return fail(fmt.Errorf("log directory: %w", err))
		}
	}
	dir := cfg.Dir
	if dir == "" {
		dir = filepath.Join(r.root, "pods", id)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fail(err)
	}
	r.mu.Lock()
	for _, other := range r.sandboxes {
		if other.rec.Dir == dir {
			r.mu.Unlock()
			return fail(fmt.Errorf("%w: directory %s is used by sandbox %s", runtime.ErrInvalid, dir, other.rec.ID))
		}
	}
	r.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(dir, bundlesDir), 0o700); err != nil {
		return fail(fmt.Errorf("sandbox directory: %w", err))
	}
	cleanup := func() {
		if cfg.Dir == "" {
			_ = os.RemoveAll(dir)
		}
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = cfg.Name
	}
	rec := sandboxRecord{ID: id, Config: cfg, Dir: dir, Ready: true, CreatedAt: time.Now()}
	rec.Config.Labels = maps.Clone(cfg.Labels)
	rec.Config.Hostname = hostname
	if err := writeEtcFiles(dir, hostname, cfg.DNS); err != nil {
		cleanup()
		return fail(err)
	}
	if err := createNamespaces(dir); err != nil {
		cleanup()
		return fail(err)
	}
	if err := writeJSON(r.sandboxPath(id), rec); err != nil {
		_ = removeNamespaces(dir)
		cleanup()
		return fail(err)
	}
	r.mu.Lock()
	r.sandboxes[id] = &sandbox{rec: rec}
	r.mu.Unlock()
	return id, nil
}

func (r *Runtime) sandboxPath(id string) string {
	return filepath.Join(r.root, sandboxesDir, id+".json")
}

// createNamespaces makes the namespaces and the /dev/shm the containers of
// a pod share: network (loopback up) and IPC, bind-mounted in the sandbox
// directory so that they outlive the containers. What an earlier sandbox
// left in the directory (no known sandbox uses it) is stale and replaced.
func createNamespaces(dir string) error {
	if err := removeNamespaces(dir); err != nil {
		return err
	}
	err := createNetNS(filepath.Join(dir, netnsFile))
	if err == nil {
		err = createIPCNS(filepath.Join(dir, ipcnsFile))
	}
	if err == nil {
		err = mountShm(filepath.Join(dir, shmDir))
	}
	if err != nil {
		_ = removeNamespaces(dir)
		return err
	}
	return nil
}

// removeNamespaces undoes createNamespaces.
func removeNamespaces(dir string) error {
	var errs []error
	for _, name := range []string{netnsFile, ipcnsFile, shmDir} {
		errs = append(errs, removeNS(filepath.Join(dir, name)))
	}
	return errors.Join(errs...)
}

// writeEtcFiles writes the hosts, resolv.conf and hostname files the
// containers of a pod share. resolv.conf is made from dns, else copied
// from the host.
func writeEtcFiles(dir, hostname string, dns *runtime.DNSConfig) error {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"
	var resolv []byte
	if dns != nil {
		resolv = resolvConf(*dns)
	} else if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		resolv = data
	}
	for name, data := range map[string][]byte{
		hostsFile:      []byte(hosts),
		resolvConfFile: resolv,
		hostnameFile:   []byte(hostname + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// resolvConf renders a resolv.conf: a nameserver line per server, then one
// search and one options line when there are any.
func resolvConf(dns runtime.DNSConfig) []byte {
	var b strings.Builder
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return []byte(b.String())
}

// StopPodSandbox implements runtime.Runtime: it kills the sandbox's
// containers. Stopping a stopped sandbox succeeds.
func (r *Runtime) StopPodSandbox(ctx context.Context, sandboxID string) error {
	sb, err := r.sandbox(sandboxID)
	if err != nil {
		return fmt.Errorf("stop sandbox: %w", err)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	r.mu.Lock()
	wasReady := sb.rec.Ready
	sb.rec.Ready = false
	rec := sb.rec
	r.mu.Unlock()
	if wasReady {
		if err := writeJSON(r.sandboxPath(sandboxID), rec); err != nil {
			return fmt.Errorf("stop sandbox %s: %w", sandboxID, err)
		}
	}
	cs := r.containersOf(sandboxID)
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(cs))
	)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.StopContainer(ctx, c.rec.ID, 0)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", sandboxID, err)
	}
	return nil
}

// RemovePodSandbox implements runtime.Runtime: it stops and removes the
// containers, deletes the network namespace, the sandbox directory (when
// the runtime made it) and the record. Removing a missing sandbox succeeds.
func (r *Runtime) RemovePodSandbox(ctx context.Context, sandboxID string) error {
	sb, err := r.sandbox(sandboxID)
	if err != nil {
		return nil
	}
	if err := r.StopPodSandbox(ctx, sandboxID); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", sandboxID, err)
	}
	for _, c := range r.containersOf(sandboxID) {
		if err := r.RemoveContainer(ctx, c.rec.ID); err != nil {
			return fmt.Errorf("remove sandbox %s: %w", sandboxID, err)
		}
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if err := removeNamespaces(sb.rec.Dir); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", sandboxID, err)
	}
	removeCgroupParent(sandboxID)
	dir := sb.rec.Dir
	if sb.rec.Config.Dir != "" {
		// The caller owns the directory: remove only what the runtime put there.
		for _, name := range []string{hostsFile, resolvConfFile, hostnameFile, bundlesDir} {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("remove sandbox %s: %w", sandboxID, err)
			}
		}
	} else if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", sandboxID, err)
	}
	if err := os.Remove(r.sandboxPath(sandboxID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove sandbox %s: %w", sandboxID, err)
	}
	r.mu.Lock()
	delete(r.sandboxes, sandboxID)
	r.mu.Unlock()
	return nil
}

// cgroupParent is the cgroup path of a sandbox; containers are below it.
func cgroupParent(sandboxID string) string { return "/edge/" + sandboxID }

// removeCgroupParent removes the sandbox's (empty) cgroup directories runc
// left behind in every hierarchy.
func removeCgroupParent(sandboxID string) {
	mounts, err := cgroupMounts()
	if err != nil {
		return
	}
	for _, m := range mounts {
		_ = os.Remove(filepath.Join(m.point, cgroupParent(sandboxID)))
	}
}

// SandboxNetNS returns the bind mount of the sandbox's network namespace
// (runtime.NetNSer), where the agent wires the pod network and runs probes.
func (r *Runtime) SandboxNetNS(ctx context.Context, sandboxID string) (string, error) {
	sb, err := r.sandbox(sandboxID)
	if err != nil {
		return "", err
	}
	return filepath.Join(sb.rec.Dir, netnsFile), nil
}
