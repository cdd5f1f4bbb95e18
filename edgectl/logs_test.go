package edgectl

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/edgeorch/edgeorch/sim"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

func TestLineWriter(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	w := &lineWriter{mu: &mu, out: &out, prefix: []byte("[pod/a/c] ")}
	for _, chunk := range []string{"one\ntw", "o\n", "", "three\nfour\nfi", "ve"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if got, want := out.String(), "[pod/a/c] one\n[pod/a/c] two\n[pod/a/c] three\n[pod/a/c] four\n"; got != want {
		t.Fatalf("before flush: %q, want %q (a partial line waits)", got, want)
	}
	w.flush()
	if got := out.String(); !strings.HasSuffix(got, "[pod/a/c] four\n[pod/a/c] five\n") {
		t.Fatalf("after flush: %q", got)
	}
}

const helloPod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {app: %s}
spec:
  nodeName: %s
  runtimeClassName: wasm
  containers:
  - name: hello
    image: hello:v1
    env:
    - {name: GREETING, value: hi}
    - name: NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
`

// linesByPod checks that every line of out is a prefixed line of hello,
// "[pod/P/hello] hi from N #k" with P on node N, and counts them by pod.
func linesByPod(out string, nodeOf map[string]string) (map[string]int, error) {
	re := regexp.MustCompile(`^\[pod/([a-z0-9-]+)/hello\] hi from ([a-z0-9-]+) #[0-9]+$`)
	n := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %q is not a prefixed hello line", line)
		}
		if nodeOf[m[1]] != m[2] {
			return nil, fmt.Errorf("line %q: pod %s runs on %s", line, m[1], nodeOf[m[1]])
		}
		n[m[1]]++
	}
	return n, nil
}

// TestLogsSelector runs two replicas of a wasm pod on two agents with real
// wazero runtimes and reads their logs with -l, once and with -f.
func TestLogsSelector(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{
		Nodes: 2,
		Agent: func(_ int, cfg *edgeagent.Config) {
			rt, err := wasm.New(context.Background(), wasm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			// Runs after the cluster's cleanup: the agent is stopped.
			t.Cleanup(func() { rt.Close(context.Background()) })
			cfg.Runtimes = map[string]runtime.Runtime{rt.Name(): rt}
			cfg.PassImages = false
		},
	})
	ctl := ctlAt(t, c.URL)
	mustOK(t, ctl("", "push", testmodules.Path(t, "hello"), "--name", "hello:v1"), "push")
	nodeOf := map[string]string{"hello-a": sim.NodeName(0), "hello-b": sim.NodeName(1), "other": sim.NodeName(0)}
	for _, p := range []struct{ name, app string }{{"hello-a", "hello"}, {"hello-b", "hello"}, {"other", "other"}} {
		mustOK(t, ctl(fmt.Sprintf(helloPod, p.name, p.app, nodeOf[p.name]), "apply", "-f", "-"), "apply "+p.name)
	}

	// Without -f: one pod after the other, each line prefixed.
	var once string
	eventually(t, 30*time.Second, func() error {
		r := ctl("", "logs", "-l", "app=hello")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		n, err := linesByPod(r.stdout, nodeOf)
		if err != nil {
			return err
		}
		if n["hello-a"] == 0 || n["hello-b"] == 0 {
			return fmt.Errorf("lines by pod %v", n)
		}
		once = r.stdout
		return nil
	})
	if n, _ := linesByPod(once, nodeOf); n["other"] != 0 {
		t.Errorf("-l app=hello printed the logs of pod other:\n%s", once)
	}
	if a, b := strings.Index(once, "[pod/hello-a/"), strings.Index(once, "[pod/hello-b/"); a > b || strings.LastIndex(once, "[pod/hello-a/") > b {
		t.Errorf("without -f the pods come one after the other, by name:\n%s", once)
	}
	if out := mustOK(t, ctl("", "logs", "-l", "app=hello", "--prefix=false", "--tail", "1"), "logs --prefix=false"); !regexp.MustCompile(`^hi from sim-node-0 #[0-9]+\nhi from sim-node-1 #[0-9]+\n$`).MatchString(out) {
		t.Errorf("--prefix=false --tail 1: %q", out)
	}
	if out := mustOK(t, ctl("", "logs", "other", "--prefix"), "logs POD --prefix"); !strings.HasPrefix(out, "[pod/other/hello] hi from sim-node-0 #1\n") {
		t.Errorf("one pod with --prefix: %q", out)
	}

	// With -f: both streams at once, whole lines, until interrupted.
	start, _ := linesByPod(once, nodeOf)
	fctx, stop := context.WithCancel(ctx)
	var out, errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(fctx, []string{"--server", c.URL, "logs", "-f", "-l", "app=hello"}, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	}()
	eventually(t, 30*time.Second, func() error {
		n, err := linesByPod(out.String(), nodeOf)
		if err != nil {
			return err
		}
		// Lines printed after the first chunk: the streams follow.
		if n["hello-a"] < start["hello-a"]+2 || n["hello-b"] < start["hello-b"]+2 {
			return fmt.Errorf("lines by pod %v, had %v", n, start)
		}
		return nil
	})
	stop()
	select {
	case got := <-code:
		if got != 0 {
			t.Errorf("logs -f -l: exit %d, stderr %s", got, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f -l did not end when interrupted")
	}
	if _, err := linesByPod(out.String(), nodeOf); err != nil {
		t.Errorf("logs -f -l: %v\n%s", err, out.String())
	}

	if r := ctl("", "logs", "-f", "-l", "app=hello", "--max-log-requests", "1"); r.code != 1 || !strings.Contains(r.stderr, "attempting to follow 2 log streams, but maximum allowed concurrency is 1") {
		t.Errorf("more streams than --max-log-requests: %+v", r)
	}
	if r := ctl("", "logs", "-l", "app=nothing"); r.code != 0 || r.stdout != "" || r.stderr != "No resources found in default namespace.\n" {
		t.Errorf("no pods: %+v", r)
	}
	if r := ctl("", "logs", "hello-a", "-l", "app=hello"); r.code != 1 || !strings.Contains(r.stderr, "only one of a POD argument or -l SELECTOR") {
		t.Errorf("POD and -l: %+v", r)
	}
	if r := ctl("", "logs", "-l", "app in (x"); r.code != 1 || !strings.Contains(r.stderr, "-l \"app in (x\"") {
		t.Errorf("bad selector: %+v", r)
	}

	// A replica whose node is offline: the others still print.
	c.StopNode(1)
	eventually(t, 15*time.Second, func() error {
		r := ctl("", "logs", "-l", "app=hello")
		if r.code != 1 || !strings.Contains(r.stderr, `error: pod/hello-b: node "sim-node-1" is not reachable`) || !strings.Contains(r.stderr, "no logs from 1 of 2 pods") {
			return fmt.Errorf("node 1 offline: %+v", r)
		}
		if n, err := linesByPod(r.stdout, nodeOf); err != nil || n["hello-a"] == 0 || n["hello-b"] != 0 {
			return fmt.Errorf("node 1 offline: stdout %q: %v", r.stdout, err)
		}
		return nil
	})
	// Following: the failure is reported while the other stream goes on.
	fctx, stop = context.WithCancel(ctx)
	defer stop()
	var out2, errOut2 syncBuffer
	go func() {
		code <- Run(fctx, []string{"--server", c.URL, "logs", "-f", "-l", "app=hello"}, IOStreams{In: strings.NewReader(""), Out: &out2, ErrOut: &errOut2})
	}()
	eventually(t, 30*time.Second, func() error {
		if !strings.Contains(errOut2.String(), `error: pod/hello-b: node "sim-node-1" is not reachable`) {
			return fmt.Errorf("stderr %q", errOut2.String())
		}
		return nil
	})
	before, _ := linesByPod(out2.String(), nodeOf)
	eventually(t, 30*time.Second, func() error {
		n, err := linesByPod(out2.String(), nodeOf)
		if err != nil || n["hello-a"] < before["hello-a"]+2 {
			return fmt.Errorf("hello-a lines %v (had %v): %v", n, before, err)
		}
		return nil
	})
	stop()
	select {
	case got := <-code:
		if got != 1 || !strings.Contains(errOut2.String(), "no logs from 1 of 2 pods") {
			t.Errorf("logs -f -l with a node offline: exit %d, stderr %s", got, errOut2.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f -l did not end when interrupted")
	}
}
