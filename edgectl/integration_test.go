package edgectl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// startControlPlane runs the real control plane (no controllers) on a random
// port in a temporary directory and returns its URL.
func startControlPlane(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- controlplane.Run(ctx, controlplane.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"}, func(url string) { urls <- url })
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
		// The API's subscriptions may reach the server just after ready.
		nc := connect(t, url)
		cl := client.New(nc)
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

// ctlAt returns a runner of edgectl against url.
func ctlAt(t *testing.T, url string) func(stdin string, args ...string) ctlResult {
	return func(stdin string, args ...string) ctlResult {
		t.Helper()
		return runCtl(t, stdin, append([]string{"--server", url}, args...)...)
	}
}

func mustOK(t *testing.T, r ctlResult, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func cmManifest(name, level string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  labels: {app: demo}\ndata: {level: %q}\n", name, level)
}

const podManifest = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {app: hello}
spec:
  nodeName: %s
  runtimeClassName: wasm
  containers:
  - name: hello
    image: hello:v1
    env:
    - {name: GREETING, value: hi}
`

func TestIntegration(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)

	t.Run("apply created unchanged configured", func(t *testing.T) {
		if out := mustOK(t, ctl(cmManifest("settings", "1"), "apply", "-f", "-"), "apply"); out != "configmap/settings created\n" {
			t.Errorf("first apply: %q", out)
		}
		if out := mustOK(t, ctl(cmManifest("settings", "1"), "apply", "-f", "-"), "apply"); out != "configmap/settings unchanged\n" {
			t.Errorf("second apply: %q", out)
		}
		if out := mustOK(t, ctl(cmManifest("settings", "2"), "apply", "-f", "-", "--dry-run=server"), "apply"); out != "configmap/settings configured (server dry run)\n" {
			t.Errorf("server dry run: %q", out)
		}
		if out := mustOK(t, ctl(cmManifest("settings", "2"), "apply", "-f", "-"), "apply"); out != "configmap/settings configured\n" {
			t.Errorf("changed apply: %q", out)
		}
		var cm struct {
			Kind     string            `json:"kind"`
			Data     map[string]string `json:"data"`
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		out := mustOK(t, ctl("", "get", "cm", "settings", "-o", "json"), "get")
		if err := json.Unmarshal([]byte(out), &cm); err != nil || cm.Kind != "ConfigMap" || cm.Data["level"] != "2" {
			t.Fatalf("get -o json: %v\n%s", err, out)
		}
		// A stale resourceVersion is a Conflict from the server.
		stale := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, resourceVersion: \"1\"}\ndata: {level: \"3\"}\n")
		r := ctl(stale, "apply", "-f", "-")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "Error from server (Conflict): ") {
			t.Errorf("stale apply: %+v", r)
		}
	})

	t.Run("apply directory with namespace first", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "a-cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: inside, namespace: team}\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "b-ns.json"), []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team"}}`), 0o644)
		out := mustOK(t, ctl("", "apply", "-f", dir), "apply dir")
		if out != "namespace/team created\nconfigmap/inside created\n" {
			t.Errorf("apply dir: %q", out)
		}
		all := mustOK(t, ctl("", "get", "cm", "-A"), "get -A")
		if !strings.HasPrefix(all, "NAMESPACE") || !strings.Contains(all, "team") || !strings.Contains(all, "inside") {
			t.Errorf("get -A:\n%s", all)
		}
		if r := ctl("", "get", "cm", "-n", "empty-ns"); r.code != 0 || r.stderr != "No resources found in empty-ns namespace.\n" {
			t.Errorf("empty list: %+v", r)
		}
		r := ctl("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: team}\n", "apply", "-n", "other", "-f", "-")
		if r.code != 1 || !strings.Contains(r.stderr, "does not match the namespace") {
			t.Errorf("namespace mismatch: %+v", r)
		}
	})

	t.Run("decode error stores nothing", func(t *testing.T) {
		bad := cmManifest("first-good", "1") + "---\n" + strings.Replace(fmt.Sprintf(podManifest, "broken", "n1"), "    image:", "    imagee:", 1)
		r := ctl(bad, "apply", "-f", "-")
		if r.code != 1 || !strings.Contains(r.stderr, "spec.containers[0].imagee") {
			t.Fatalf("decode error: %+v", r)
		}
		for _, obj := range []string{"cm/first-good", "pod/broken"} {
			if r := ctl("", "get", obj); r.code != 1 || !strings.Contains(r.stderr, "Error from server (NotFound)") {
				t.Errorf("%s stored: %+v", obj, r)
			}
		}
	})

	t.Run("get selectors names and tables", func(t *testing.T) {
		mustOK(t, ctl(cmManifest("other", "1"), "apply", "-f", "-"), "apply")
		out := mustOK(t, ctl("", "get", "configmaps", "-l", "app in (demo,x),tier!=db", "-o", "name"), "get -l")
		if out != "configmap/other\nconfigmap/settings\n" {
			t.Errorf("get -l -o name: %q", out)
		}
		out = mustOK(t, ctl("", "get", "cm", "-l", "app=demo", "-o", "jsonpath={.items[*].metadata.name}"), "get jsonpath")
		if out != "other settings" {
			t.Errorf("get -o jsonpath: %q", out)
		}
		out = mustOK(t, ctl("", "get", "cm"), "get table")
		rows := lines(out)
		if len(rows) != 3 || strings.Join(rows[0], " ") != "NAME DATA AGE" || rows[1][0] != "other" || rows[1][1] != "1" {
			t.Errorf("table:\n%s", out)
		}
		out = mustOK(t, ctl("", "get", "cm/other", "cm/settings", "-o", "json"), "get list")
		var list struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || list.Kind != "List" || len(list.Items) != 2 {
			t.Errorf("list json: %v %s", err, out)
		}
		r := ctl("", "get", "cm", "settings", "nope")
		if r.code != 1 || !strings.Contains(r.stderr, `Error from server (NotFound): configmaps "nope" not found`) || !strings.Contains(r.stdout, "settings") {
			t.Errorf("partial get: %+v", r)
		}
		out = mustOK(t, ctl("", "get", "ns", "default", "-o", "yaml"), "get yaml")
		if !strings.Contains(out, "kind: Namespace") || !strings.Contains(out, "name: default") {
			t.Errorf("yaml:\n%s", out)
		}
	})

	t.Run("label", func(t *testing.T) {
		if out := mustOK(t, ctl("", "label", "cm", "other", "tier=demo"), "label"); out != "configmap/other labeled\n" {
			t.Errorf("label: %q", out)
		}
		if r := ctl("", "label", "cm/other", "tier=prod"); r.code != 1 || !strings.Contains(r.stderr, "--overwrite is false") {
			t.Errorf("label without overwrite: %+v", r)
		}
		mustOK(t, ctl("", "label", "cm/other", "tier=prod", "--overwrite"), "label overwrite")
		if out := mustOK(t, ctl("", "get", "cm", "-l", "tier=prod", "-o", "name"), "get"); out != "configmap/other\n" {
			t.Errorf("after label: %q", out)
		}
		mustOK(t, ctl("", "label", "cm/other", "tier-"), "unlabel")
		if r := ctl("", "get", "cm", "-l", "tier", "-o", "name"); r.stdout != "" {
			t.Errorf("after unlabel: %+v", r)
		}
	})

	t.Run("wait", func(t *testing.T) {
		start := time.Now()
		r := ctl("", "wait", "--for=condition=Ready", "pod/nosuch", "--timeout=300ms")
		if r.code != 1 || r.stderr != "error: timed out waiting for the condition on pods/nosuch\n" {
			t.Errorf("wait timeout: %+v", r)
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
			t.Errorf("wait took %v", d)
		}
		if out := mustOK(t, ctl("", "wait", "--for=jsonpath={.data.level}=2", "configmap/settings", "--timeout=5s"), "wait jsonpath"); out != "configmap/settings condition met\n" {
			t.Errorf("wait jsonpath: %q", out)
		}
		if out := mustOK(t, ctl("", "wait", "--for=delete", "cm/never-was", "--timeout=1s"), "wait delete"); out != "configmap/never-was condition met\n" {
			t.Errorf("wait delete: %q", out)
		}
		// The condition may become true only while waiting.
		mustOK(t, ctl(cmManifest("later", "1"), "apply", "-f", "-"), "apply")
		var wg sync.WaitGroup
		var res ctlResult
		wg.Add(1)
		go func() {
			defer wg.Done()
			res = runCtl(t, "", "--server", url, "wait", "--for=jsonpath={.data.level}=9", "cm/later", "--timeout=20s")
		}()
		mustOK(t, ctl(cmManifest("later", "9"), "apply", "-f", "-"), "apply")
		wg.Wait()
		if res.code != 0 || res.stdout != "configmap/later condition met\n" {
			t.Errorf("wait for change: %+v", res)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if out := mustOK(t, ctl("", "delete", "cm", "later"), "delete"); out != "configmap \"later\" deleted\n" {
			t.Errorf("delete: %q", out)
		}
		r := ctl("", "delete", "cm", "later")
		if r.code != 1 || r.stderr != "Error from server (NotFound): configmaps \"later\" not found\n" {
			t.Errorf("delete missing: %+v", r)
		}
		mustOK(t, ctl("", "delete", "cm", "later", "--ignore-not-found"), "delete --ignore-not-found")
		mustOK(t, ctl(cmManifest("sel-a", "1")+"---\n"+cmManifest("sel-b", "1"), "apply", "-f", "-"), "apply")
		mustOK(t, ctl("", "label", "cm", "sel-a", "gone=yes"), "label")
		mustOK(t, ctl("", "label", "cm", "sel-b", "gone=yes"), "label")
		if out := mustOK(t, ctl("", "delete", "cm", "-l", "gone=yes"), "delete -l"); out != "configmap \"sel-a\" deleted\nconfigmap \"sel-b\" deleted\n" {
			t.Errorf("delete -l: %q", out)
		}
		dir := t.TempDir()
		f := filepath.Join(dir, "cm.yaml")
		os.WriteFile(f, []byte(cmManifest("by-file", "1")), 0o644)
		mustOK(t, ctl("", "apply", "-f", f), "apply")
		if out := mustOK(t, ctl("", "delete", "-f", f), "delete -f"); out != "configmap \"by-file\" deleted\n" {
			t.Errorf("delete -f: %q", out)
		}
	})

	t.Run("logs describe", func(t *testing.T) {
		mustOK(t, ctl(fmt.Sprintf(podManifest, "hello", "node-x"), "apply", "-f", "-"), "apply pod")
		mustOK(t, ctl(fmt.Sprintf(podManifest, "lonely", "node-gone"), "apply", "-f", "-"), "apply pod")
		nc := connect(t, url)
		var mu sync.Mutex
		var got []client.LogsRequest
		sub, err := nc.Subscribe(messaging.NodeSubject("node-x", messaging.NodeVerbLogs), func(m *nats.Msg) {
			var req client.LogsRequest
			json.Unmarshal(m.Data, &req)
			mu.Lock()
			got = append(got, req)
			mu.Unlock()
			if !req.Follow {
				b, _ := json.Marshal(client.LogsChunk{Data: []byte("line 1\nline 2\n"), EOF: true})
				m.Respond(b)
				return
			}
			b, _ := json.Marshal(client.LogsChunk{Data: []byte("first\n")})
			m.Respond(b)
			go func() {
				for i, c := range []client.LogsChunk{{Data: []byte("second\n")}, {Data: []byte("third\n"), EOF: true}} {
					b, _ := json.Marshal(c)
					if _, err := nc.Request(req.Inbox, b, 5*time.Second); err != nil {
						t.Errorf("chunk %d not acknowledged: %v", i, err)
						return
					}
				}
			}()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		nc.Flush()

		if out := mustOK(t, ctl("", "logs", "hello", "--tail", "5", "--timestamps"), "logs"); out != "line 1\nline 2\n" {
			t.Errorf("logs: %q", out)
		}
		if out := mustOK(t, ctl("", "logs", "-f", "pod/hello"), "logs -f"); out != "first\nsecond\nthird\n" {
			t.Errorf("logs -f: %q", out)
		}
		mu.Lock()
		if len(got) != 2 || got[0].Pod != "hello" || got[0].Namespace != "default" || got[0].Container != "hello" || got[0].TailLines != 5 || !got[0].Timestamps || !got[1].Follow || got[1].Inbox == "" {
			t.Errorf("requests: %+v", got)
		}
		mu.Unlock()
		if r := ctl("", "logs", "lonely"); r.code != 1 || r.stderr != "error: node \"node-gone\" is not reachable\n" {
			t.Errorf("unreachable node: %+v", r)
		}
		if r := ctl("", "logs", "hello", "-c", "nope"); r.code != 1 || !strings.Contains(r.stderr, "container nope is not valid for pod hello") {
			t.Errorf("bad container: %+v", r)
		}

		out := mustOK(t, ctl("", "describe", "pod", "hello"), "describe")
		for _, want := range []string{"Name:", "hello", "Namespace:", "default", "Node:", "node-x", "Labels:", "app=hello", "Containers:", "Image:", "hello:v1", "GREETING:", "Events:"} {
			if !strings.Contains(out, want) {
				t.Errorf("describe lacks %q:\n%s", want, out)
			}
		}
		if r := ctl("", "describe", "pod", "nope"); r.code != 1 || !strings.Contains(r.stderr, "NotFound") {
			t.Errorf("describe missing: %+v", r)
		}
	})

	t.Run("push and version", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "m.wasm")
		os.WriteFile(f, []byte("\x00asm\x01\x00\x00\x00"), 0o644)
		out := mustOK(t, ctl("", "push", f, "--name", "mod:v1"), "push")
		if !regexp.MustCompile(`^pushed mod:v1 sha256:[0-9a-f]{64} \(8 bytes\)\n$`).MatchString(out) {
			t.Errorf("push: %q", out)
		}
		out = mustOK(t, ctl("", "version"), "version")
		if !strings.Contains(out, "Client Version: ") || !strings.Contains(out, "Server Version: "+messaging.APIServiceName) {
			t.Errorf("version: %q", out)
		}
	})

	t.Run("get watch", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := &syncBuffer{}
		done := make(chan int, 1)
		go func() {
			done <- Run(ctx, []string{"--server", url, "get", "cm", "settings", "-w"}, IOStreams{In: strings.NewReader(""), Out: out, ErrOut: out})
		}()
		eventually(t, 10*time.Second, func() error {
			if !strings.Contains(out.String(), "settings") {
				return fmt.Errorf("no initial row: %q", out.String())
			}
			return nil
		})
		mustOK(t, ctl("", "label", "cm", "settings", "watched=yes"), "label")
		eventually(t, 10*time.Second, func() error {
			if n := strings.Count(out.String(), "settings"); n < 2 {
				return fmt.Errorf("want a second row: %q", out.String())
			}
			return nil
		})
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("watch exit %d: %s", code, out.String())
		}
		if !strings.HasPrefix(out.String(), "NAME") {
			t.Errorf("watch output lacks header: %q", out.String())
		}
	})
}

// syncBuffer is a bytes.Buffer read while edgectl writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
