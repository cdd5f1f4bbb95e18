package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/logfile"
)

// harness runs containers of one sandbox in a test.
type harness struct {
	t    *testing.T
	r    *Runtime
	ctx  context.Context
	imgs testImages
	sb   string
	logs string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	r := newTestRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	h := &harness{t: t, r: r, ctx: ctx, imgs: makeImages(t), logs: t.TempDir()}
	h.sb = h.sandbox(r, "pod")
	return h
}

func (h *harness) sandbox(r *Runtime, name string) string {
	h.t.Helper()
	id, err := r.RunPodSandbox(h.ctx, runtime.PodSandboxConfig{
		Name: name, Namespace: "test", UID: "uid-" + name, Hostname: name + "-host", LogDirectory: h.logs,
	})
	if err != nil {
		h.t.Fatalf("RunPodSandbox: %v", err)
	}
	return id
}

// busybox is a config running a shell command in the busybox image.
func (h *harness) busybox(name, script string) runtime.ContainerConfig {
	return runtime.ContainerConfig{
		Name: name, Image: h.imgs.busybox,
		Command: []string{"sh", "-c", script},
		LogPath: filepath.Join(h.logs, name+".log"),
	}
}

func (h *harness) start(r *Runtime, cfg runtime.ContainerConfig) string {
	h.t.Helper()
	id, err := r.CreateContainer(h.ctx, h.sb, cfg)
	if err != nil {
		h.t.Fatalf("CreateContainer %s: %v", cfg.Name, err)
	}
	if err := r.StartContainer(h.ctx, id); err != nil {
		h.t.Fatalf("StartContainer %s: %v", cfg.Name, err)
	}
	return id
}

func (h *harness) wait(r *Runtime, id string, state runtime.ContainerState, within time.Duration) runtime.ContainerStatus {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := r.ContainerStatus(h.ctx, id)
		if err != nil {
			h.t.Fatalf("ContainerStatus: %v", err)
		}
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("container %s is %s after %v, want %s; log:\n%s", st.Name, st.State, within, state, h.log(st.LogPath))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run starts a container and waits for it to exit.
func (h *harness) run(cfg runtime.ContainerConfig) (runtime.ContainerStatus, string) {
	h.t.Helper()
	st := h.wait(h.r, h.start(h.r, cfg), runtime.StateExited, 20*time.Second)
	return st, h.log(st.LogPath)
}

func (h *harness) log(path string) string {
	h.t.Helper()
	var b bytes.Buffer
	if err := logfile.Read(h.ctx, path, logfile.ReadOptions{}, &b); err != nil && !errors.Is(err, os.ErrNotExist) {
		h.t.Fatalf("read log %s: %v", path, err)
	}
	return b.String()
}

func TestOOMKilled(t *testing.T) {
	h := newHarness(t)
	cfg := h.busybox("hog", "x=a; while true; do x=$x$x; done")
	cfg.MemoryLimitBytes = 32 << 20
	st, _ := h.run(cfg)
	if st.ExitCode != 137 || st.Reason != runtime.ReasonOOMKilled {
		t.Fatalf("memory hog ended with %d %q (%s), want 137 OOMKilled", st.ExitCode, st.Reason, st.Message)
	}
}

// TestPodSharing checks what the containers of a pod share: the network
// (localhost), the IPC namespace and /dev/shm.
func TestPodSharing(t *testing.T) {
	h := newHarness(t)
	server := h.start(h.r, h.busybox("server",
		"echo shared-memory > /dev/shm/marker && mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 8080 -h /www"))
	h.wait(h.r, server, runtime.StateRunning, 5*time.Second)
	st, log := h.run(h.busybox("client",
		"readlink /proc/self/ns/ipc; cat /dev/shm/marker; "+
			"for i in $(seq 100); do wget -q -O - http://localhost:8080/index.html && exit 0; sleep 0.05; done; exit 1"))
	if st.ExitCode != 0 || !strings.Contains(log, "hello-from-server") || !strings.Contains(log, "shared-memory") {
		t.Fatalf("client exited %d (%s), log:\n%s", st.ExitCode, st.Reason, log)
	}
	var ns bytes.Buffer
	if code, err := h.r.Exec(h.ctx, server, runtime.ExecRequest{Cmd: []string{"readlink", "/proc/self/ns/ipc"}, Stdout: &ns}); err != nil || code != 0 {
		t.Fatalf("exec readlink: %d %v", code, err)
	}
	if !strings.HasPrefix(log, ns.String()) {
		t.Fatalf("IPC namespaces differ: server %q, client log:\n%s", ns.String(), log)
	}
}

func TestExec(t *testing.T) {
	h := newHarness(t)
	id := h.start(h.r, h.busybox("sleeper", "exec sleep 3600"))
	h.wait(h.r, id, runtime.StateRunning, 5*time.Second)
	var out, errOut bytes.Buffer
	code, err := h.r.Exec(h.ctx, id, runtime.ExecRequest{
		Cmd:    []string{"sh", "-c", "read line; echo out:$line; echo err >&2; exit 7"},
		Stdin:  strings.NewReader("typed\n"),
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if code != 7 || out.String() != "out:typed\n" || errOut.String() != "err\n" {
		t.Fatalf("exec: code %d stdout %q stderr %q", code, out.String(), errOut.String())
	}
	// Exec sees the pod's hostname and /etc/hosts.
	out.Reset()
	if code, err := h.r.Exec(h.ctx, id, runtime.ExecRequest{Cmd: []string{"sh", "-c", "hostname; cat /etc/hosts"}, Stdout: &out}); err != nil || code != 0 {
		t.Fatalf("exec hostname: %d %v", code, err)
	}
	if !strings.HasPrefix(out.String(), "pod-host\n") || !strings.Contains(out.String(), "127.0.0.1\tlocalhost") || !strings.Contains(out.String(), "pod-host") {
		t.Fatalf("hostname and hosts:\n%s", out.String())
	}
	// With a terminal: input is echoed, output has CRLF line ends.
	out.Reset()
	code, err = h.r.Exec(h.ctx, id, runtime.ExecRequest{
		Cmd: []string{"sh", "-c", "tty; read line; echo got:$line; exit 3"}, TTY: true,
		Stdin: strings.NewReader("typed\n"), Stdout: &out,
	})
	if err != nil || code != 3 || !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "got:typed\r\n") {
		t.Fatalf("TTY exec: code %d err %v output %q", code, err, out.String())
	}
	if err := h.r.StopContainer(h.ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	_, err = h.r.Exec(h.ctx, id, runtime.ExecRequest{Cmd: []string{"true"}})
	if !errors.Is(err, runtime.ErrState) {
		t.Fatalf("exec in a stopped container: %v, want ErrState", err)
	}
}

var (
	noNewPrivs = regexp.MustCompile(`NoNewPrivs:\s+(\d)`)
	capEff     = regexp.MustCompile(`CapEff:\s+([0-9a-f]+)`)
)

// profile runs `cat /proc/self/status` and returns NoNewPrivs and CapEff.
func (h *harness) profile(name string, sec runtime.SecurityConfig) (string, uint64) {
	h.t.Helper()
	cfg := h.busybox(name, "cat /proc/self/status")
	cfg.Security = sec
	st, log := h.run(cfg)
	nnp, eff := noNewPrivs.FindStringSubmatch(log), capEff.FindStringSubmatch(log)
	if st.ExitCode != 0 || nnp == nil || eff == nil {
		h.t.Fatalf("%s: exit %d, log:\n%s", name, st.ExitCode, log)
	}
	mask, err := strconv.ParseUint(eff[1], 16, 64)
	if err != nil {
		h.t.Fatal(err)
	}
	return nnp[1], mask
}

func TestSecurityProfile(t *testing.T) {
	h := newHarness(t)
	want, err := CapabilityMask(DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	if nnp, caps := h.profile("default", runtime.SecurityConfig{}); nnp != "1" || caps != want {
		t.Fatalf("default profile: NoNewPrivs %s CapEff %x, want 1 %x", nnp, caps, want)
	}
	netAdmin, _ := CapabilityMask([]string{"NET_ADMIN"})
	if nnp, caps := h.profile("changed", runtime.SecurityConfig{
		AllowPrivilegeEscalation: true, CapDrop: []string{"ALL"}, CapAdd: []string{"NET_ADMIN"},
	}); nnp != "0" || caps != netAdmin {
		t.Fatalf("changed profile: NoNewPrivs %s CapEff %x, want 0 %x", nnp, caps, netAdmin)
	}
	chown, _ := CapabilityMask([]string{"CHOWN"})
	if _, caps := h.profile("dropped", runtime.SecurityConfig{CapDrop: []string{"CAP_CHOWN"}}); caps != want&^chown {
		t.Fatalf("CapDrop CHOWN: CapEff %x, want %x", caps, want&^chown)
	}
}

func TestUsers(t *testing.T) {
	h := newHarness(t)
	uid := int64(1000)
	cfg := h.busybox("runas", "id -u; id -g")
	cfg.Security.RunAsUser = &uid
	if st, log := h.run(cfg); st.ExitCode != 0 || !strings.HasPrefix(log, "1000\n") {
		t.Fatalf("runAsUser 1000: exit %d, log:\n%s", st.ExitCode, log)
	}
	// A user name in the image config is looked up in its /etc/passwd.
	img := makeImage(t, filepath.Join(t.TempDir(), "named"), imageSpec{User: "app", Cmd: []string{"sh", "-c", "echo uid=$(id -u) gid=$(id -g)"}})
	st, log := h.run(runtime.ContainerConfig{Name: "named", Image: img, LogPath: filepath.Join(h.logs, "named.log")})
	if st.ExitCode != 0 || !strings.Contains(log, "uid=1000 gid=1000") {
		t.Fatalf("image user app: exit %d, log:\n%s", st.ExitCode, log)
	}
	img = makeImage(t, filepath.Join(t.TempDir(), "unknown"), imageSpec{User: "nobody-here", Cmd: []string{"true"}})
	_, err := h.r.CreateContainer(h.ctx, h.sb, runtime.ContainerConfig{Name: "unknown", Image: img})
	if !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("unknown user: %v, want ErrInvalid", err)
	}
}

func TestReadOnlyRootFS(t *testing.T) {
	h := newHarness(t)
	cfg := h.busybox("ro", "touch /written")
	cfg.Security.ReadOnlyRootFS = true
	if st, log := h.run(cfg); st.ExitCode == 0 || !strings.Contains(log, "Read-only file system") {
		t.Fatalf("write to a read-only rootfs: exit %d, log:\n%s", st.ExitCode, log)
	}
	// Without it the write lands in the container's own layer, not the image.
	if st, log := h.run(h.busybox("rw", "touch /written && ls /written")); st.ExitCode != 0 {
		t.Fatalf("write to a writable rootfs: exit %d, log:\n%s", st.ExitCode, log)
	}
	if _, err := os.Stat(filepath.Join(h.imgs.busybox, "rootfs", "written")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the container wrote into the image: %v", err)
	}
}

func TestMountsAndLimits(t *testing.T) {
	h := newHarness(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in.txt"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := h.busybox("mounts", "cat /data/in.txt; echo back > /data/out.txt; cat /sys/fs/cgroup/pids/pids.max; echo cwd=$(pwd) GREETING=$GREETING")
	cfg.Mounts = []runtime.Mount{{HostPath: host, ContainerPath: "/data"}}
	cfg.PidsLimit = 64
	cfg.WorkingDir = "/tmp"
	cfg.Env = []runtime.KeyValue{{Key: "GREETING", Value: "hi"}}
	st, log := h.run(cfg)
	for _, want := range []string{"from-host", "\n64\n", "cwd=/tmp GREETING=hi"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q (exit %d):\n%s", want, st.ExitCode, log)
		}
	}
	if data, err := os.ReadFile(filepath.Join(host, "out.txt")); err != nil || string(data) != "back\n" {
		t.Fatalf("write through the mount: %q %v", data, err)
	}
}

func TestBadCommand(t *testing.T) {
	h := newHarness(t)
	cfg := h.busybox("bad", "")
	cfg.Command = []string{"/no/such/binary"}
	id, err := h.r.CreateContainer(h.ctx, h.sb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = h.r.StartContainer(h.ctx, id)
	if !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("StartContainer of a bad command: %v, want ErrInvalid", err)
	}
	st, err2 := h.r.ContainerStatus(h.ctx, id)
	if err2 != nil {
		t.Fatal(err2)
	}
	if st.State != runtime.StateExited || st.ExitCode != 128 || st.Reason != "StartError" || !strings.Contains(st.Message, "/no/such/binary") {
		t.Fatalf("status of a bad command: %+v (start error %v)", st, err)
	}
	if err := h.r.RemoveContainer(h.ctx, id); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}

	// A start whose context ends is abandoned, and leaves nothing behind.
	id, err = h.r.CreateContainer(h.ctx, h.sb, h.busybox("abandoned", "exec sleep 3600"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	cancel()
	if err := h.r.StartContainer(ctx, id); !errors.Is(err, context.Canceled) {
		t.Fatalf("StartContainer with a cancelled context: %v", err)
	}
	if st, _ := h.r.ContainerStatus(h.ctx, id); st.State != runtime.StateExited || st.Reason != "StartError" {
		t.Fatalf("abandoned start: %+v", st)
	}
	if err := h.r.RemoveContainer(h.ctx, id); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	if out, err := h.r.runcCmd(h.ctx, "list", "-q"); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("runc still lists containers: %q %v", out, err)
	}
}

func TestStats(t *testing.T) {
	h := newHarness(t)
	id := h.start(h.r, runtime.ContainerConfig{Name: "busy", Image: h.imgs.busy})
	h.wait(h.r, id, runtime.StateRunning, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := h.r.ContainerStats(h.ctx, id)
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		if st.MemoryBytes > 0 && st.CPUNanoSecs > uint64(50*time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats of a busy container: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := h.r.StopContainer(h.ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if st, err := h.r.ContainerStats(h.ctx, id); err != nil || st.MemoryBytes != 0 {
		t.Fatalf("stats of a stopped container: %+v %v", st, err)
	}
}

// TestRecover simulates an agent restart: a second runtime on the same
// root sees what the first started, including exits that happened while
// nobody watched and a container whose shim died.
func TestRecover(t *testing.T) {
	h := newHarness(t)
	sleeper := h.start(h.r, h.busybox("sleeper", "exec sleep 3600"))
	quick := h.start(h.r, h.busybox("quick", "sleep 0.2; exit 5"))
	orphan := h.start(h.r, h.busybox("orphan", "exec sleep 3600"))
	h.wait(h.r, sleeper, runtime.StateRunning, 5*time.Second)
	h.wait(h.r, orphan, runtime.StateRunning, 5*time.Second)
	var started startedRecord
	if ok, err := readJSON(filepath.Join(h.r.root, containersDir, orphan, startedFile), &started); !ok || err != nil {
		t.Fatalf("started record: %v", err)
	}
	if err := syscall.Kill(started.ShimPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill shim: %v", err)
	}
	if err := h.r.Close(h.ctx); err != nil {
		t.Fatal(err)
	}

	r2, err := New(h.ctx, Options{Root: h.r.root})
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	h.wait(r2, sleeper, runtime.StateRunning, time.Second)
	if st := h.wait(r2, quick, runtime.StateExited, 5*time.Second); st.ExitCode != 5 || st.Reason != runtime.ReasonError {
		t.Fatalf("exit seen after restart: %+v", st)
	}
	// Without its shim the container still runs ...
	h.wait(r2, orphan, runtime.StateRunning, 5*time.Second)
	list, err := r2.ListContainers(h.ctx, runtime.ContainerFilter{SandboxID: h.sb})
	if err != nil || len(list) != 3 {
		t.Fatalf("recovered list: %v %v", ids(list), err)
	}
	start := time.Now()
	if err := r2.StopContainer(h.ctx, sleeper, 5*time.Second); err != nil {
		t.Fatalf("stop after restart: %v", err)
	}
	if st := h.wait(r2, sleeper, runtime.StateExited, time.Second); st.ExitCode != 137 || st.Reason != runtime.ReasonKilled || time.Since(start) > 7*time.Second {
		t.Fatalf("stopped after restart: %+v", st)
	}
	// ... and its end is seen, with an unknown exit code.
	if err := r2.StopContainer(h.ctx, orphan, 0); err != nil {
		t.Fatalf("stop orphan: %v", err)
	}
	if st := h.wait(r2, orphan, runtime.StateExited, 5*time.Second); st.ExitCode != exitUnknown || !strings.Contains(st.Message, "unknown") {
		t.Fatalf("orphan after stop: %+v", st)
	}
	if err := r2.RemovePodSandbox(h.ctx, h.sb); err != nil {
		t.Fatalf("remove sandbox after restart: %v", err)
	}
	if _, err := r2.ContainerStatus(h.ctx, sleeper); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("status after remove: %v", err)
	}
	r3, err := New(h.ctx, Options{Root: h.r.root})
	if err != nil {
		t.Fatal(err)
	}
	if list, err := r3.ListContainers(h.ctx, runtime.ContainerFilter{}); err != nil || len(list) != 0 {
		t.Fatalf("containers left after removal: %v %v", ids(list), err)
	}
	// The first runtime's view is stale now; keep its cleanup from failing.
	h.r.mu.Lock()
	clear(h.r.sandboxes)
	clear(h.r.containers)
	h.r.mu.Unlock()
}

func ids(list []runtime.ContainerStatus) []string {
	var out []string
	for _, st := range list {
		out = append(out, fmt.Sprintf("%s(%s,%s)", st.Name, st.ID, st.State))
	}
	return out
}

// TestCopiedRootfs runs a container on a copied root filesystem: overlayfs
// refuses lower directories with a ',' in their path.
func TestCopiedRootfs(t *testing.T) {
	h := newHarness(t)
	img := makeImage(t, filepath.Join(t.TempDir(), "img,copy"), imageSpec{Cmd: []string{"sh", "-c", "ls -l /bin/sh; touch /new && echo wrote"}})
	id, err := h.r.CreateContainer(h.ctx, h.sb, runtime.ContainerConfig{Name: "copy", Image: img, LogPath: filepath.Join(h.logs, "copy.log")})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := h.r.container(id)
	if c.rec.Overlay {
		t.Fatal("overlayfs used for a lower directory with a ','")
	}
	rootfs := filepath.Join(c.rec.Bundle, "rootfs")
	if to, err := os.Readlink(filepath.Join(rootfs, "bin", "sh")); err != nil || to != "busybox" {
		t.Fatalf("copied symlink: %q %v", to, err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("copied /tmp mode: %v %v", fi.Mode(), err)
	}
	if err := h.r.StartContainer(h.ctx, id); err != nil {
		t.Fatal(err)
	}
	st := h.wait(h.r, id, runtime.StateExited, 10*time.Second)
	if log := h.log(st.LogPath); st.ExitCode != 0 || !strings.Contains(log, "-> busybox") || !strings.Contains(log, "wrote") {
		t.Fatalf("container on a copied rootfs: exit %d, log:\n%s", st.ExitCode, log)
	}
	if _, err := os.Stat(filepath.Join(img, "rootfs", "new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the container wrote into the image: %v", err)
	}
	// On this host overlayfs works for ordinary paths.
	id, err = h.r.CreateContainer(h.ctx, h.sb, runtime.ContainerConfig{Name: "overlay", Image: h.imgs.busybox})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := h.r.container(id); !c.rec.Overlay {
		t.Log("overlayfs could not be mounted here; containers use copies")
	}
}

// TestSandboxDir checks a sandbox in a directory the caller gives: the
// namespace and /etc files live there, each sandbox has its own network,
// and removal leaves the directory for the caller.
func TestSandboxDir(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(t.TempDir(), "pod-a")
	dns := &runtime.DNSConfig{
		Servers:  []string{"10.244.0.1", "10.0.0.53"},
		Searches: []string{"test.svc.cluster.local", "svc.cluster.local", "cluster.local"},
		Options:  []string{"ndots:5"},
	}
	run := func() string {
		id, err := h.r.RunPodSandbox(h.ctx, runtime.PodSandboxConfig{Name: "a", Namespace: "test", Dir: dir, LogDirectory: h.logs, DNS: dns})
		if err != nil {
			t.Fatalf("RunPodSandbox in %s: %v", dir, err)
		}
		return id
	}
	sb := run()
	if _, err := h.r.RunPodSandbox(h.ctx, runtime.PodSandboxConfig{Name: "b", Dir: dir}); !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("second sandbox in the same directory: %v", err)
	}
	for _, name := range []string{netnsFile, hostsFile, resolvConfFile, hostnameFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("sandbox file: %v", err)
		}
	}
	// Containers see the sandbox's resolv.conf: made from the DNS config,
	// else the host's.
	hostResolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]string{
		sb:   "nameserver 10.244.0.1\nnameserver 10.0.0.53\nsearch test.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
		h.sb: string(hostResolv),
	} {
		id, err := h.r.CreateContainer(h.ctx, s, h.busybox("resolv-"+s[:6], "cat /etc/resolv.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.r.StartContainer(h.ctx, id); err != nil {
			t.Fatal(err)
		}
		st := h.wait(h.r, id, runtime.StateExited, 10*time.Second)
		if got := h.log(st.LogPath); st.ExitCode != 0 || strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Fatalf("resolv.conf in sandbox %s: exit %d\n%s\nwant\n%s", s, st.ExitCode, got, want)
		}
	}
	// Both pods listen on the same port, each in its own namespace, and
	// each pod's client reaches its own listener.
	for _, s := range []string{sb, h.sb} {
		id, err := h.r.CreateContainer(h.ctx, s, h.busybox("server-"+s[:6], "nc -l -p 9000; echo listener-done"))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.r.StartContainer(h.ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{sb, h.sb} {
		cfg := h.busybox("client-"+s[:6], "for i in $(seq 100); do echo hi | nc 127.0.0.1 9000 && exit 0; sleep 0.05; done; exit 1")
		id, err := h.r.CreateContainer(h.ctx, s, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.r.StartContainer(h.ctx, id); err != nil {
			t.Fatal(err)
		}
		if st := h.wait(h.r, id, runtime.StateExited, 10*time.Second); st.ExitCode != 0 {
			t.Fatalf("client in sandbox %s: exit %d", s, st.ExitCode)
		}
	}
	if err := h.r.RemovePodSandbox(h.ctx, sb); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, netnsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("netns left after removal: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the caller's directory was removed: %v", err)
	}
	run() // reusing the directory works
}
