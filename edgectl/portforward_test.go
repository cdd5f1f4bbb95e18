package edgectl

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
	"github.com/nats-io/nats.go"
)

func TestParseForwardedPorts(t *testing.T) {
	got, err := parseForwardedPorts([]string{"8080", "9000:80", ":443", "0:http"})
	if err != nil {
		t.Fatal(err)
	}
	want := []forwardedPort{{8080, "8080"}, {9000, "80"}, {0, "443"}, {0, "http"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for arg, msg := range map[string]string{
		"8080:":   "the remote port is missing",
		"x:80":    `local port "x" is not a number`,
		"1:70000": "remote port 70000 out of range",
		"http":    "a named remote port needs a local port",
	} {
		if _, err := parseForwardedPorts([]string{arg}); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", arg, err, msg)
		}
	}
}

func TestSplitRemote(t *testing.T) {
	for arg, want := range map[string]string{
		"web:/data":        "{ web /data} true",
		"prod/web:/a/b":    "{prod web /a/b} true",
		"./a:b":            "{  } false",
		"/tmp/x":           "{  } false",
		"local":            "{  } false",
		":/data":           "{  } false",
		"web:":             "{ web } true",
		"~/notes:draft.md": "{  } false",
	} {
		r, ok := splitRemote(arg)
		if got := fmt.Sprint(r, " ", ok); got != want {
			t.Errorf("%q: %s, want %s", arg, got, want)
		}
	}
}

// startControlPlaneWithControllers is a control plane running its
// controllers (Deployments, the scheduler, assignments).
func startControlPlaneWithControllers(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- controlplane.Run(ctx, controlplane.Config{
			DataDir: t.TempDir(), Listen: "127.0.0.1:0",
			RunControllers: func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error {
				return controllers.Run(ctx, st, b, nc)
			},
		}, func(url string) { urls <- url })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("control plane: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("control plane did not stop")
		}
	})
	select {
	case url := <-urls:
		cl := client.New(connect(t, url))
		eventually(t, 10*time.Second, func() error {
			_, err := cl.Get(context.Background(), "namespaces", "", "default")
			return err
		})
		return url
	case err := <-done:
		t.Fatalf("control plane exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("control plane not ready after 30s")
	}
	return ""
}

// startWasmAgent runs a real agent with the wasm runtime as node-1.
func startWasmAgent(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := wasm.New(ctx, wasm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- edgeagent.Run(ctx, nc, edgeagent.Config{
			NodeName: "node-1", DataDir: t.TempDir(), Address: "127.0.0.1",
			HeartbeatInterval: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
			BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
			Runtimes: map[string]runtime.Runtime{manifests.RuntimeWasm: rt},
			Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
		rt.Close(context.Background())
	})
}

// startCtl runs edgectl until the test ends and returns its stdout and
// stderr, read while it writes.
func startCtl(t *testing.T, url string, args ...string) (*syncBuffer, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, append([]string{"--server", url}, args...), IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("edgectl %v did not stop", args)
		}
	})
	return &out, &errb
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)`)

// TestPortForwardAndCpCommands runs edgectl port-forward and cp against a
// real agent running a wasm Deployment behind a Service.
func TestPortForwardAndCpCommands(t *testing.T) {
	url := startControlPlaneWithControllers(t)
	ctl := ctlAt(t, url)
	cl := client.New(connect(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := os.Open(testmodules.Path(t, "httpd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := cl.PushModule(ctx, "httpd:v1", f); err != nil {
		t.Fatal(err)
	}
	startWasmAgent(t, url)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	podPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      runtimeClassName: wasm
      volumes:
      - name: data
        emptyDir: {sizeLimit: 16Mi}
      containers:
      - name: httpd
        image: httpd:v1
        env: [{name: GREETING, value: forwarded}]
        ports: [{name: http, containerPort: %d}]
        volumeMounts: [{name: data, mountPath: /data}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
`, podPort)
	mustOK(t, ctl(manifest, "apply", "-f", "-"), "apply")
	var pod string
	eventually(t, 30*time.Second, func() error {
		objs, _, err := cl.List(ctx, "pods", "default", "app=web")
		if err != nil {
			return err
		}
		for _, o := range objs {
			if p := o.(*manifests.Pod); p.Status.Phase == manifests.PodRunning {
				pod = p.Name
				return nil
			}
		}
		return fmt.Errorf("no running web pod among %d", len(objs))
	})

	get := func(port string) error {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "hello from wasm forwarded\n" {
			return fmt.Errorf("body %q, %v", body, err)
		}
		return nil
	}
	for _, target := range []string{"svc/web", "deploy/web", "pod/" + pod} {
		remote := "http"
		if target == "svc/web" {
			remote = "80"
		}
		out, _ := startCtl(t, url, "port-forward", target, "0:"+remote)
		var local string
		eventually(t, 10*time.Second, func() error {
			m := forwardingRE.FindStringSubmatch(out.String())
			if m == nil {
				return fmt.Errorf("no Forwarding line in %q", out.String())
			}
			if m[2] != fmt.Sprint(podPort) {
				return fmt.Errorf("forwarding to %s, want the pod's port %d", m[2], podPort)
			}
			local = m[1]
			return nil
		})
		eventually(t, 10*time.Second, func() error { return get(local) })
		if !strings.Contains(out.String(), "Handling connection for "+local) {
			t.Errorf("%s: stdout %q", target, out.String())
		}
	}
	r := ctl("", "port-forward", "svc/web", "8080:81")
	if r.code == 0 || !strings.Contains(r.stderr, "service web does not have a port 81") {
		t.Errorf("service port 81: %+v", r)
	}
	r = ctl("", "port-forward", "pod/"+pod, "1:ssh")
	if r.code == 0 || !strings.Contains(r.stderr, `has no container port named "ssh"`) {
		t.Errorf("named port ssh: %+v", r)
	}

	// cp: a directory into the pod's volume and back.
	src := filepath.Join(t.TempDir(), "site")
	if err := os.MkdirAll(filepath.Join(src, "img"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "index.html"), []byte("<h1>hi</h1>\n"), 0o644)
	os.WriteFile(filepath.Join(src, "img", "logo.svg"), []byte("<svg/>\n"), 0o600)
	mustOK(t, ctl("", "cp", src, pod+":/data"), "cp to the pod")
	back := t.TempDir()
	mustOK(t, ctl("", "cp", "default/"+pod+":/data/site", filepath.Join(back, "copy")), "cp from the pod")
	for name, want := range map[string]string{"index.html": "<h1>hi</h1>\n", "img/logo.svg": "<svg/>\n"} {
		b, err := os.ReadFile(filepath.Join(back, "copy", name))
		if err != nil || string(b) != want {
			t.Errorf("%s came back as %q, %v", name, b, err)
		}
	}
	if st, err := os.Stat(filepath.Join(back, "copy", "img", "logo.svg")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("logo.svg mode: %v, %v", st, err)
	}
	r = ctl("", "cp", src, pod+":/etc")
	if r.code == 0 || !strings.Contains(r.stderr, "/etc is not in a volume of wasm container httpd") {
		t.Errorf("cp outside the volumes: %+v", r)
	}
	r = ctl("", "cp", pod+":/data/missing", back)
	if r.code == 0 || !strings.Contains(r.stderr, "/data/missing: no such file or directory") {
		t.Errorf("cp of a missing path: %+v", r)
	}
	r = ctl("", "cp", "nothing-here", pod+":/data")
	if r.code == 0 || !strings.Contains(r.stderr, "nothing-here: no such file or directory") {
		t.Errorf("cp of a missing local path: %+v", r)
	}
	r = ctl("", "cp", "a", "b")
	if r.code == 0 || !strings.Contains(r.stderr, "one of SRC and DEST must be a pod path") {
		t.Errorf("cp between local paths: %+v", r)
	}
}
