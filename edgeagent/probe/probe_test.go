package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
)

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hostPort(t *testing.T, rawURL string) (string, int32) {
	t.Helper()
	u := strings.TrimPrefix(strings.TrimPrefix(rawURL, "http://"), "https://")
	h, p, err := net.SplitHostPort(u)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, int32(n)
}

func TestHandlers(t *testing.T) {
	var gotHeader, gotHost atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("X-Probe"); v != "" {
			gotHeader.Store(v)
			gotHost.Store(r.Host)
		}
		w.WriteHeader(204)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://other.invalid/fail", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	host, port := hostPort(t, srv.URL)
	_, tlsPort := hostPort(t, tlsSrv.URL)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := int32(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()

	rt := fake.New("")
	sb, _ := rt.RunPodSandbox(context.Background(), runtime.PodSandboxConfig{Name: "p", Namespace: "d", UID: "u", LogDirectory: t.TempDir()})
	id, err := rt.CreateContainer(context.Background(), sb, runtime.ContainerConfig{Name: "c", Image: "fake://run", LogPath: t.TempDir() + "/c.log"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.StartContainer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	defer rt.StopContainer(context.Background(), id, 0)

	target := Target{ContainerID: id, Execer: rt, Host: host,
		Ports: []manifests.ContainerPort{{Name: "web", ContainerPort: port}, {Name: "udp", ContainerPort: port, Protocol: "UDP"}}}
	httpGet := func(path string, p manifests.IntOrString) *manifests.Probe {
		return &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Path: path, Port: p}}
	}
	for _, tc := range []struct {
		name  string
		probe *manifests.Probe
		t     Target
		want  string // "" for success, else a substring of the failure
	}{
		{"http ok named port", &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Path: "ok", Port: manifests.FromString("web"),
			HTTPHeaders: []manifests.HTTPHeader{{Name: "X-Probe", Value: "yes"}, {Name: "Host", Value: "example.test"}}}}, target, ""},
		{"http 500", httpGet("/fail", manifests.FromInt(port)), target, "HTTP probe failed with statuscode: 500"},
		{"http same-host redirect followed", httpGet("/here", manifests.FromInt(port)), target, "statuscode: 500"},
		{"http other-host redirect not followed", httpGet("/away", manifests.FromInt(port)), target, ""},
		{"http unknown port name", httpGet("/ok", manifests.FromString("nope")), target, `cannot find port "nope"`},
		{"http udp port name is not tcp", httpGet("/ok", manifests.FromString("udp")), target, `cannot find port "udp"`},
		{"http refused", httpGet("/ok", manifests.FromInt(closedPort)), target, "connection refused"},
		{"https skips verify", &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Path: "/ok", Port: manifests.FromInt(tlsPort), Scheme: "HTTPS"}}, target, ""},
		{"http to https port fails", httpGet("/ok", manifests.FromInt(tlsPort)), target, "statuscode: 400"},
		{"tcp ok", &manifests.Probe{TCPSocket: &manifests.TCPSocketAction{Port: manifests.FromString("web")}}, target, ""},
		{"tcp refused", &manifests.Probe{TCPSocket: &manifests.TCPSocketAction{Port: manifests.FromInt(closedPort)}}, target, "connection refused"},
		{"exec ok", &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"true"}}}, target, ""},
		{"exec fails", &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"exit", "3"}}}, target, `exited with 3`},
		{"exec output is the message", &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"nosuch"}}}, target, "nosuch: command not found"},
		{"exec wasm", &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"true"}}}, Target{ContainerID: id, Execer: rt, Wasm: true},
			"exec probes are not supported for wasm containers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := tc.t.run(ctx, tc.probe)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want success, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want failure %q, got %v", tc.want, err)
			}
		})
	}
	if gotHeader.Load() != "yes" || gotHost.Load() != "example.test" {
		t.Fatalf("headers: X-Probe=%v Host=%v", gotHeader.Load(), gotHost.Load())
	}
}

func TestReadinessFlipsWithThresholds(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	status.Store(500)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) }))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	c := &manifests.Container{Name: "c", ReadinessProbe: &manifests.Probe{
		HTTPGet: &manifests.HTTPGetAction{Path: "/", Port: manifests.FromInt(port)}, PeriodSeconds: 1, SuccessThreshold: 2, FailureThreshold: 2}}
	var notified atomic.Int32
	p := Start(context.Background(), c, Target{Host: host}, time.Now(), func() { notified.Add(1) })
	defer p.Stop()
	if st := p.State(); st.Ready || !st.Started || st.Kill {
		t.Fatalf("initial state %+v", st)
	}
	time.Sleep(1500 * time.Millisecond)
	if p.State().Ready {
		t.Fatal("ready while failing")
	}
	status.Store(200)
	start := time.Now()
	waitFor(t, 5*time.Second, "ready", func() bool { return p.State().Ready })
	// Two successes in a row are needed: at least one period.
	if time.Since(start) < 900*time.Millisecond {
		t.Fatalf("ready after %v, before successThreshold 2", time.Since(start))
	}
	status.Store(503)
	waitFor(t, 5*time.Second, "unready", func() bool { return !p.State().Ready })
	if st := p.State(); st.Kill {
		t.Fatalf("readiness failure asked for a kill: %+v", st)
	}
	if notified.Load() < 2 {
		t.Fatalf("notified %d times", notified.Load())
	}
}

func TestLivenessKills(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	probe := &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Path: "/", Port: manifests.FromInt(port)}, PeriodSeconds: 1, FailureThreshold: 2}
	c := &manifests.Container{Name: "c", LivenessProbe: probe}
	p := Start(context.Background(), c, Target{Host: host}, time.Now(), nil)
	defer p.Stop()
	if st := p.State(); !st.Ready || !st.Started {
		t.Fatalf("no readiness probe: ready at once, got %+v", st)
	}
	waitFor(t, 5*time.Second, "kill", func() bool { return p.State().Kill })
	st := p.State()
	if st.Message != "Liveness probe failed: HTTP probe failed with statuscode: 500" || st.KillProbe != probe || st.Ready {
		t.Fatalf("state %+v", st)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d probes before the kill, want failureThreshold 2", n)
	}
	// On hold after the kill: no more probing.
	time.Sleep(1200 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("probed %d times after the kill", n)
	}
}

func TestInitialDelayAndTimeout(t *testing.T) {
	t.Parallel()
	var first atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first.CompareAndSwap(0, time.Now().UnixNano())
		time.Sleep(1500 * time.Millisecond) // beyond timeoutSeconds 1
	}))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	c := &manifests.Container{Name: "c", LivenessProbe: &manifests.Probe{
		HTTPGet: &manifests.HTTPGetAction{Port: manifests.FromInt(port)}, InitialDelaySeconds: 1, PeriodSeconds: 1, FailureThreshold: 1}}
	started := time.Now()
	p := Start(context.Background(), c, Target{Host: host}, started, nil)
	defer p.Stop()
	waitFor(t, 5*time.Second, "kill", func() bool { return p.State().Kill })
	if d := time.Duration(first.Load() - started.UnixNano()); d < time.Second {
		t.Fatalf("first probe %v after start, before initialDelaySeconds", d)
	}
	if msg := p.State().Message; !strings.Contains(msg, "timed out after 1s") {
		t.Fatalf("message %q", msg)
	}
}

func TestStartupGatesOthers(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := int32(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	var readinessCalls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { readinessCalls.Add(1) }))
	defer srv.Close()
	_, rport := hostPort(t, srv.URL)
	c := &manifests.Container{Name: "c",
		StartupProbe:   &manifests.Probe{TCPSocket: &manifests.TCPSocketAction{Port: manifests.FromInt(port)}, PeriodSeconds: 1, FailureThreshold: 30},
		ReadinessProbe: &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Port: manifests.FromInt(rport)}, PeriodSeconds: 1},
	}
	p := Start(context.Background(), c, Target{}, time.Now(), nil)
	defer p.Stop()
	time.Sleep(1200 * time.Millisecond)
	if st := p.State(); st.Started || st.Ready || st.Kill || readinessCalls.Load() != 0 {
		t.Fatalf("before startup success: %+v, %d readiness probes", st, readinessCalls.Load())
	}
	l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	waitFor(t, 5*time.Second, "started", func() bool { return p.State().Started })
	waitFor(t, 5*time.Second, "ready", func() bool { return p.State().Ready })
}

func TestStartupFailureKills(t *testing.T) {
	t.Parallel()
	c := &manifests.Container{Name: "c",
		StartupProbe:  &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"true"}}, PeriodSeconds: 1, FailureThreshold: 1},
		LivenessProbe: &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"true"}}, PeriodSeconds: 1},
	}
	p := Start(context.Background(), c, Target{Wasm: true}, time.Now(), nil)
	defer p.Stop()
	waitFor(t, 3*time.Second, "kill", func() bool { return p.State().Kill })
	if st := p.State(); st.Started || st.Message != "Startup probe failed: exec probes are not supported for wasm containers" {
		t.Fatalf("state %+v", st)
	}
}
