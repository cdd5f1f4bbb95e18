package edgeagent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// linkProxy forwards TCP connections to a NATS server; cut closes them and
// refuses new ones until heal, as a lost link would.
type linkProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *linkProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *linkProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		if !down {
			p.conns[c] = true
		}
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *linkProxy) forward(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[u] = true
	p.mu.Unlock()
	go func() { io.Copy(u, c); u.Close() }()
	io.Copy(c, u)
	c.Close()
}

func (p *linkProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *linkProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var resyncLine = regexp.MustCompile(`resync: (\d+) changes, (\d+) bytes \(full relist would be (\d+) bytes\)`)

// deltaResyncs returns the changes, bytes and full-relist bytes of every
// delta resync line logged so far.
func deltaResyncs(log string) [][3]int {
	var out [][3]int
	for _, m := range resyncLine.FindAllStringSubmatch(log, -1) {
		var r [3]int
		for i := range r {
			r[i], _ = strconv.Atoi(m[i+1])
		}
		out = append(out, r)
	}
	return out
}

// startFakeAgent runs an agent with a fake runtime, reaching NATS at url
// and logging at info into logs.
func startFakeAgent(t *testing.T, url, dataDir string, logs io.Writer) (*fake.Runtime, *nats.Conn, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	frt := fake.New("fake")
	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nc, Config{
			NodeName: "node-1", DataDir: dataDir, Address: "10.1.2.3",
			HeartbeatInterval: 200 * time.Millisecond,
			Runtimes:          map[string]runtime.Runtime{"fake": frt},
			PollInterval:      20 * time.Millisecond, BackoffBase: 50 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
		frt.Close(context.Background())
	}
	t.Cleanup(stop)
	return frt, nc, stop
}

// runningContainers maps pod names to the IDs of their running containers.
func runningContainers(t *testing.T, rt runtime.Runtime) map[string]string {
	t.Helper()
	list, err := rt.ListContainers(context.Background(), runtime.ContainerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range list {
		if c.State == runtime.StateRunning {
			out[c.Labels[labelPodName]] = c.ID
		}
	}
	return out
}

func waitRunning(t *testing.T, cp *controlPlane, names ...string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		for _, n := range names {
			if p := cp.pod(t, n); p.Status.Phase != manifests.PodRunning {
				return fmt.Errorf("pod %s is %q", n, p.Status.Phase)
			}
		}
		return nil
	})
}

// TestDeltaResyncAfterLinkLoss cuts the agent's link while one pod is added
// and one removed (its delete marker purged, so only the keys listing can
// reveal it) next to 20 unchanged pods: on heal only the change is fetched
// and no unchanged pod restarts.
func TestDeltaResyncAfterLinkLoss(t *testing.T) {
	cp := startControlPlane(t)
	proxy := newLinkProxy(t, cp.ns.Addr().String())
	logs := &lockedBuffer{}
	frt, nc, _ := startFakeAgent(t, proxy.url(), t.TempDir(), logs)

	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("keep-%02d", i))
	}
	for _, n := range append(names, "gone") {
		cp.assign(t, handlerPod(n, "fake", "fake://run"))
	}
	waitRunning(t, cp, append(names, "gone")...)
	before := runningContainers(t, frt)

	proxy.cut()
	eventually(t, 10*time.Second, func() error {
		if nc.IsConnected() {
			return fmt.Errorf("agent still connected")
		}
		return nil
	})
	ctx := ctxT(t)
	if err := cp.buckets.Assignments.Delete(ctx, messaging.AssignmentKey("node-1", "default", "gone")); err != nil {
		t.Fatal(err)
	}
	if err := cp.buckets.Assignments.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatal(err)
	}
	added := cp.assign(t, handlerPod("added", "fake", "fake://run"))
	proxy.heal()

	waitRunning(t, cp, "added")
	eventually(t, 10*time.Second, func() error {
		if id := runningContainers(t, frt)["gone"]; id != "" {
			return fmt.Errorf("pod gone still runs container %s", id)
		}
		return nil
	})
	var got [3]int
	eventually(t, 10*time.Second, func() error {
		rs := deltaResyncs(logs.String())
		if len(rs) == 0 {
			return fmt.Errorf("no delta resync logged")
		}
		got = rs[len(rs)-1]
		return nil
	})
	t.Logf("resync: %d changes, %d bytes, full relist %d bytes", got[0], got[1], got[2])
	if got[0] != 1 {
		t.Errorf("resync fetched %d changes, want 1 (the added pod)", got[0])
	}
	if got[1] == 0 || got[1]*10 > got[2] {
		t.Errorf("resync received %d bytes, want some but under a tenth of the full relist's %d", got[1], got[2])
	}
	after := runningContainers(t, frt)
	for _, n := range names {
		if after[n] != before[n] {
			t.Errorf("pod %s: container %s before, %s after the resync", n, before[n], after[n])
		}
	}
	if after["added"] == "" || added.UID == "" {
		t.Errorf("added pod not running: %v", after)
	}
}

// TestDeltaResyncAfterRestart: an agent stopped while its assignments
// change resumes from its stored revision when it starts again.
func TestDeltaResyncAfterRestart(t *testing.T) {
	cp := startControlPlane(t)
	dataDir := t.TempDir()
	_, _, stop := startFakeAgent(t, cp.url, dataDir, io.Discard)
	for _, n := range []string{"keep", "gone"} {
		cp.assign(t, handlerPod(n, "fake", "fake://run"))
	}
	waitRunning(t, cp, "keep", "gone")
	stop()

	ctx := ctxT(t)
	if err := cp.buckets.Assignments.Delete(ctx, messaging.AssignmentKey("node-1", "default", "gone")); err != nil {
		t.Fatal(err)
	}
	cp.assign(t, handlerPod("added", "fake", "fake://run"))
	logs := &lockedBuffer{}
	frt2, _, _ := startFakeAgent(t, cp.url, dataDir, logs)
	waitRunning(t, cp, "added")
	eventually(t, 10*time.Second, func() error {
		running := runningContainers(t, frt2)
		if running["gone"] != "" || running["keep"] == "" || running["added"] == "" {
			return fmt.Errorf("running %v, want keep and added", running)
		}
		rs := deltaResyncs(logs.String())
		if len(rs) == 0 {
			return fmt.Errorf("no delta resync logged")
		}
		// The added pod's value and the delete marker of gone.
		if rs[0][0] != 2 || rs[0][1] >= rs[0][2] {
			return fmt.Errorf("resync %v, want 2 changes and fewer bytes than a full relist", rs[0])
		}
		return nil
	})
}
