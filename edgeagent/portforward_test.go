package edgeagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/oci"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// tcpPair is a connected pair of loopback TCP connections: the test uses
// one end as the user of a forwarded port, PortForward the other.
func tcpPair(tb testing.TB) (user, fwd *net.TCPConn) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	u, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	f := <-accepted
	if f == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { u.Close(); f.Close() })
	return u.(*net.TCPConn), f.(*net.TCPConn)
}

// forward starts a port-forward session to pod:port and returns the
// user's end of it and the session's outcome.
func forward(ctx context.Context, tb testing.TB, cl *client.Client, pod string, port int32) (*net.TCPConn, <-chan error) {
	tb.Helper()
	user, fwd := tcpPair(tb)
	done := make(chan error, 1)
	go func() {
		err := cl.PortForward(ctx, "node-1", client.PortForwardRequest{Namespace: "default", Pod: pod, Port: port}, fwd)
		fwd.Close()
		done <- err
	}()
	return user, done
}

// noTunnels waits until the agent has no session open.
func noTunnels(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		if n := openTunnels.Load(); n != 0 {
			return fmt.Errorf("%d sessions still open on the agent", n)
		}
		return nil
	})
}

// echoImage is an unpacked image whose rootfs is the host's static
// busybox with the applets the port-forward and cp tests use.
func echoImage(tb testing.TB) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("OCI port-forward and cp tests need root (runc, network namespaces)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		tb.Fatalf("OCI port-forward and cp tests need runc: %v", err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		tb.Fatalf("OCI tests need a static busybox at /bin/busybox: %v", err)
	}
	dir := tb.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "srv"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, a := range []string{"sh", "nc", "cat", "sleep", "ln", "mkdir", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "srv", "motd"), []byte("from the image\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"config": map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"sh"}}})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// echoPod is an OCI pod echoing every connection to port 9000 (busybox nc
// forks a cat per connection), with a link "/esc" leading out of its root
// filesystem.
func echoPod(name, image string) *manifests.Pod {
	grace := int64(1)
	return &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{
			NodeName:                      "node-1",
			TerminationGracePeriodSeconds: &grace,
			Containers: []manifests.Container{{
				Name: "echo", Image: image,
				Command: []string{"sh", "-c", "ln -s ../../../../../../../../../../../.. /esc && exec nc -ll -p 9000 -e cat"},
				Ports:   []manifests.ContainerPort{{ContainerPort: 9000}},
			}},
		},
	}
}

// startOCIAgent runs an agent with the runc runtime (images are unpacked
// directories, passed as they are) and stops what it ran at the end.
func startOCIAgent(tb testing.TB, url string) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := oci.New(ctx, oci.Options{Root: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nc, Config{
			NodeName: "node-1", DataDir: tb.TempDir(), Address: "10.1.2.3",
			Runtimes: map[string]runtime.Runtime{manifests.RuntimeOCI: rt}, PassImages: true,
			HeartbeatInterval: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
			BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("agent: %v", err)
		}
		nc.Close()
		// runc containers outlive the agent: stop and remove them.
		bg := context.Background()
		cs, _ := rt.ListContainers(bg, runtime.ContainerFilter{})
		sandboxes := map[string]bool{}
		for _, c := range cs {
			rt.StopContainer(bg, c.ID, time.Second)
			rt.RemoveContainer(bg, c.ID)
			sandboxes[c.SandboxID] = true
		}
		for sb := range sandboxes {
			rt.StopPodSandbox(bg, sb)
			rt.RemovePodSandbox(bg, sb)
		}
		rt.Close(bg)
	})
}

// runningPod waits until the pod runs.
func (cp *controlPlane) runningPod(t testing.TB, name string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		obj, err := cp.cl.Get(context.Background(), "pods", "default", name)
		if err == nil && obj.(*manifests.Pod).Status.Phase == manifests.PodRunning {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s not running: %v %+v", name, err, obj)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// echoThrough sends n random bytes through a forwarded connection to the
// echo pod, half-closes, and checks that the same bytes come back.
func echoThrough(ctx context.Context, tb testing.TB, cl *client.Client, n int) error {
	user, done := forward(ctx, tb, cl, "echo", 9000)
	data := make([]byte, n)
	rand.Read(data)
	wrote := make(chan error, 1)
	go func() {
		_, err := user.Write(data)
		if err == nil {
			err = user.CloseWrite()
		}
		wrote <- err
	}()
	h := sha256.New()
	got, err := io.Copy(h, user)
	if err != nil {
		return fmt.Errorf("read the echo: %w", err)
	}
	if err := <-wrote; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if want := sha256.Sum256(data); got != int64(n) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("echo: %d bytes back of %d, checksum %x, want %x", got, n, h.Sum(nil), want)
	}
	if err := <-done; err != nil {
		return fmt.Errorf("session: %w", err)
	}
	return nil
}

func TestPortForwardOCI(t *testing.T) {
	image := echoImage(t)
	cp := startControlPlane(t)
	startOCIAgent(t, cp.url)
	cp.assign(t, echoPod("echo", image))
	cp.runningPod(t, "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// nc may not listen yet when the pod is Running.
	eventually(t, 10*time.Second, func() error { return echoThrough(ctx, t, cp.cl, 10) })

	// 8 MiB both ways.
	if err := echoThrough(ctx, t, cp.cl, 8<<20); err != nil {
		t.Fatal(err)
	}
	noTunnels(t)

	// Several connections at once.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- echoThrough(ctx, t, cp.cl, 2<<20) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	noTunnels(t)

	// A port nobody listens on: the refusal comes back as the error.
	_, done := forward(ctx, t, cp.cl, "echo", 9001)
	if err := <-done; client.CodeOf(err) != client.CodeUnavailable || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("port 9001: %v, want Unavailable, connection refused", err)
	}
	_, done = forward(ctx, t, cp.cl, "ghost", 9000)
	if err := <-done; !client.IsNotFound(err) || !strings.Contains(err.Error(), `pod "ghost" not found on node node-1`) {
		t.Fatalf("no such pod: %v", err)
	}

	// The user closing the connection mid-stream ends the session on
	// both sides.
	user, done := forward(ctx, t, cp.cl, "echo", 9000)
	if _, err := user.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(user, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	user.Close()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the session did not end after the user closed the connection")
	}
	noTunnels(t)
}

// TestPortForwardClientGone cuts the client's NATS connection in the
// middle of a session: the agent notices the silence (keepalive timeout)
// and closes the pod's connection.
func TestPortForwardClientGone(t *testing.T) {
	image := echoImage(t)
	oldK, oldT := tunnelKeepalive.Load(), tunnelTimeout.Load()
	tunnelKeepalive.Store(int64(200 * time.Millisecond))
	tunnelTimeout.Store(int64(time.Second))
	t.Cleanup(func() { tunnelKeepalive.Store(oldK); tunnelTimeout.Store(oldT) })
	cp := startControlPlane(t)
	startOCIAgent(t, cp.url)
	cp.assign(t, echoPod("echo", image))
	cp.runningPod(t, "echo")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eventually(t, 10*time.Second, func() error { return echoThrough(ctx, t, cp.cl, 10) })

	nc, err := nats.Connect(cp.url)
	if err != nil {
		t.Fatal(err)
	}
	user, done := forward(ctx, t, client.New(nc), "echo", 9000)
	if _, err := user.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(user, buf); err != nil {
		t.Fatal(err)
	}
	if n := openTunnels.Load(); n != 1 {
		t.Fatalf("%d sessions open, want 1", n)
	}
	nc.Close() // the link to NATS is gone, without a word to the agent
	noTunnels(t)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the session ended without an error after its connection closed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client's session did not end")
	}
}

// TestPortForwardWasm forwards to the httpd module of a wasm pod, which
// listens on the node's network on its declared containerPort.
func TestPortForwardWasm(t *testing.T) {
	cp := startControlPlane(t)
	ctx := ctxT(t)
	f, err := os.Open(testmodules.Path(t, "httpd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := cp.cl.PushModule(ctx, "httpd:v1", f); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	startAgent(t, cp.url, t.TempDir())
	pod := handlerPod("web", manifests.RuntimeWasm, "httpd:v1")
	c := &pod.Spec.Containers[0]
	c.Env = []manifests.EnvVar{{Name: "GREETING", Value: "through NATS"}}
	c.Ports = []manifests.ContainerPort{{Name: "http", ContainerPort: int32(port)}}
	cp.assign(t, pod)
	cp.runningPod(t, "web")

	get := func() error {
		user, done := forward(ctx, t, cp.cl, "web", int32(port))
		if _, err := user.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
			return err
		}
		user.CloseWrite()
		body, err := io.ReadAll(user)
		if err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
		if !strings.HasPrefix(string(body), "HTTP/1.0 200 OK") || !strings.HasSuffix(string(body), "hello from wasm through NATS\n") {
			return fmt.Errorf("response %q", body)
		}
		return nil
	}
	eventually(t, 10*time.Second, get)
	noTunnels(t)

	_, done := forward(ctx, t, cp.cl, "web", 22)
	if err := <-done; !client.IsInvalid(err) || !strings.Contains(err.Error(), fmt.Sprintf("listens only on its declared TCP containerPorts (%d), not on 22", port)) {
		t.Fatalf("undeclared port: %v", err)
	}
}

// TestTunnelPermissions checks the NATS permissions of the sessions in
// operator mode: the agent's handlers on its node's credentials serve them
// (its verb subjects, its session subjects, the client's inbox), an admin
// opens them, a read-only user may not.
func TestTunnelPermissions(t *testing.T) {
	dir := t.TempDir()
	authority, err := auth.Open(auth.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: dir, Port: -1, Auth: authority.ServerAuth()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	authority.SetPusher(func(j string) error { return messaging.UpdateAccount(ns, j) })
	connect := func(name string, role auth.Role, node string, opts ...nats.Option) *nats.Conn {
		raw, err := authority.NewUserCreds(name, role, node, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := auth.ParseCreds(raw)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(ns.ClientURL(), append(c.Options(), opts...)...)
		if err != nil {
			t.Fatalf("connect as %s: %v", name, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	// The agent's session handlers on its node's credentials, for a wasm
	// pod declaring the port of an echo listener (standing in for the
	// module's listener: what is checked here is NATS, not the pod).
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.(*net.TCPConn).CloseWrite() }()
		}
	}()
	port := int32(echo.Addr().(*net.TCPAddr).Port)
	node := connect("node-1", auth.RoleNode, "node-1", nats.CustomInboxPrefix(messaging.NodeInboxPrefix("node-1")))
	var nodeErrs errList
	node.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { nodeErrs.add(err) })
	a := &Agent{cfg: Config{NodeName: "node-1"}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), nc: node, workers: map[string]*podWorker{}}
	pod := handlerPod("p", manifests.RuntimeWasm, "m:v1")
	pod.Spec.Containers[0].Ports = []manifests.ContainerPort{{ContainerPort: port}}
	a.workers[podKey("default", "p")] = newPodWorker(a, &state.Pod{Pod: pod, Revision: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, err := a.serveTunnels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	node.Flush()

	admin := client.New(connect("admin", auth.RoleAdmin, ""))
	user, fwd := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		done <- admin.PortForward(ctxT(t), "node-1", client.PortForwardRequest{Namespace: "default", Pod: "p", Port: port}, fwd)
	}()
	if _, err := user.Write([]byte("through the node's permissions")); err != nil {
		t.Fatal(err)
	}
	user.CloseWrite()
	got, err := io.ReadAll(user)
	if err != nil || string(got) != "through the node's permissions" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("admin session: %v", err)
	}
	if errs := nodeErrs.all(); len(errs) != 0 || node.LastError() != nil {
		t.Fatalf("the node's connection: %v, %v", errs, node.LastError())
	}

	ro := client.New(connect("ro", auth.RoleReadonly, ""))
	_, rfwd := tcpPair(t)
	err = ro.PortForward(ctxT(t), "node-1", client.PortForwardRequest{Namespace: "default", Pod: "p", Port: port}, rfwd)
	if client.CodeOf(err) != client.CodeForbidden {
		t.Fatalf("read-only port-forward: %v, want Forbidden", err)
	}
	err = ro.CopyFromPod(ctxT(t), "node-1", client.CopyRequest{Namespace: "default", Pod: "p", Path: "/etc"}, io.Discard)
	if client.CodeOf(err) != client.CodeForbidden {
		t.Fatalf("read-only cp: %v, want Forbidden", err)
	}
}

// errList collects asynchronous connection errors.
type errList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errList) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// BenchmarkPortForward measures the throughput of one port-forward
// session to an OCI pod echoing its input (the bytes go both ways; the
// figure counts them once).
func BenchmarkPortForward(b *testing.B) {
	image := echoImage(b)
	cp := startControlPlaneTB(b)
	startOCIAgent(b, cp.url)
	cp.assignTB(b, echoPod("echo", image))
	cp.runningPod(b, "echo")
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for echoThrough(ctx, b, cp.cl, 10) != nil {
		if time.Now().After(deadline) {
			b.Fatal("echo pod not answering")
		}
		time.Sleep(50 * time.Millisecond)
	}
	const size = 16 << 20
	n := 0
	start := time.Now()
	for b.Loop() {
		if err := echoThrough(ctx, b, cp.cl, size); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(size)*float64(n)/time.Since(start).Seconds()/1e6, "MB/s")
}

// startControlPlaneTB is startControlPlane for benchmarks.
func startControlPlaneTB(tb testing.TB) *controlPlane {
	tb.Helper()
	dir := tb.TempDir()
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: dir, Port: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	nc, err := messaging.Connect(ctx, ns.ClientURL(), "bench-control-plane")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	bk, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	srv := api.New(store.New(bk.Objects), nc, api.Options{})
	if err := srv.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Stop() })
	return &controlPlane{dir: dir, ns: ns, url: ns.ClientURL(), buckets: bk, cl: client.New(nc)}
}

// assignTB is assign for benchmarks.
func (cp *controlPlane) assignTB(tb testing.TB, pod *manifests.Pod) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, obj, err := cp.cl.Apply(ctx, pod)
	if err != nil {
		tb.Fatalf("apply pod %s: %v", pod.Name, err)
	}
	stored := obj.(*manifests.Pod)
	stored.Status = manifests.PodStatus{}
	raw, _ := json.Marshal(stored)
	if _, err := cp.buckets.Assignments.Put(ctx, messaging.AssignmentKey("node-1", stored.Namespace, stored.Name), raw); err != nil {
		tb.Fatal(err)
	}
}
