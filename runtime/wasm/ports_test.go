package wasm

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// freePort is a loopback TCP port nothing listens on right now.
func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// get fetches url, retrying until the server answers or 10 s pass.
func get(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr != nil {
				t.Fatalf("read %s: %v", url, rerr)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s %q", url, resp.Status, body)
			}
			return string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHTTPServerOnPreopenedListener(t *testing.T) {
	f := newFixture(t)
	port := freePort(t)
	mount := t.TempDir()
	id := f.start(runtime.ContainerConfig{
		Name: "httpd", Image: testmodules.Path(t, "httpd"),
		Env: []runtime.KeyValue{{Key: "GREETING", Value: "edge"}},
		// A mount shifts the listener to fd 4; LISTEN_FDS_START says so.
		Mounts: []runtime.Mount{{HostPath: mount, ContainerPath: "/data"}},
		Ports:  []runtime.PortMapping{{ContainerPort: port, HostIP: "127.0.0.1"}},
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for i := range 3 {
		if body := get(t, url); body != "hello from wasm edge\n" {
			t.Fatalf("request %d: body %q", i, body)
		}
	}
	// The module logs after answering, so the log may lag the response.
	st := f.wait(id, func(st runtime.ContainerStatus) bool {
		return st.State != runtime.StateRunning || strings.Contains(f.logs(id), "httpd: 3 GET / HTTP/1.1")
	})
	if text := f.logs(id); st.State != runtime.StateRunning || !strings.Contains(text, "httpd: serving on fd 4") {
		t.Fatalf("status %+v, log: %q", st, text)
	}

	// Stopping ends the module promptly and releases the port.
	start := time.Now()
	if err := f.r.StopContainer(f.ctx, id, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("stop took %v", took)
	}
	if st := f.wait(id, exited); st.Reason != runtime.ReasonKilled {
		t.Fatalf("status %+v, want Killed", st)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port not released after stop: %v", err)
	}
	l.Close()
}

func TestPortInUse(t *testing.T) {
	f := newFixture(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := int32(busy.Addr().(*net.TCPAddr).Port)
	id, err := f.r.CreateContainer(f.ctx, f.sb, runtime.ContainerConfig{
		Name: "httpd", Image: testmodules.Path(t, "httpd"),
		Ports: []runtime.PortMapping{{ContainerPort: port, HostIP: "127.0.0.1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = f.r.StartContainer(f.ctx, id)
	if !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("start with a busy port: %v, want ErrInvalid ... already in use", err)
	}
	if st, err := f.r.ContainerStatus(f.ctx, id); err != nil || st.State != runtime.StateCreated {
		t.Fatalf("status after failed start %+v %v", st, err)
	}
}

func TestInvalidPorts(t *testing.T) {
	f := newFixture(t)
	for _, p := range []runtime.PortMapping{
		{ContainerPort: 53, Protocol: "UDP"},
		{ContainerPort: 0},
		{ContainerPort: 70000},
		{ContainerPort: 80, HostIP: "not-an-ip"},
	} {
		_, err := f.r.CreateContainer(f.ctx, f.sb, runtime.ContainerConfig{
			Name: "httpd", Image: testmodules.Path(t, "httpd"), Ports: []runtime.PortMapping{p},
		})
		if !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("port %+v: %v, want ErrInvalid", p, err)
		}
	}
}

func TestListenEnv(t *testing.T) {
	f := newFixture(t)
	id := f.start(runtime.ContainerConfig{
		Name: "env", Image: testmodules.Path(t, "env"),
		Env:   []runtime.KeyValue{{Key: "LISTEN_FDS", Value: "9"}, {Key: "KEEP", Value: "me"}},
		Ports: []runtime.PortMapping{{ContainerPort: freePort(t), HostIP: "127.0.0.1"}, {ContainerPort: freePort(t), HostIP: "127.0.0.1"}},
	})
	if st := f.wait(id, exited); st.ExitCode != 0 {
		t.Fatalf("status %+v", st)
	}
	text := f.logs(id)
	for _, want := range []string{"env LISTEN_FDS=2\n", "env LISTEN_FDS_START=3\n", "env KEEP=me\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q: %q", want, text)
		}
	}
}
