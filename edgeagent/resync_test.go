package edgeagent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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

	// toClient counts the bytes forwarded from the server to clients.
	toClient atomic.Uint64
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
	io.Copy(countingWriter{c, &p.toClient}, u)
	c.Close()
}

// countingWriter adds what it writes to n.
type countingWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	in *atomic.Uint64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(uint64(n))
	return n, err
}

// countingDialer dials TCP and counts what its connections receive.
type countingDialer struct{ in atomic.Uint64 }

func (d *countingDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return countingConn{c, &d.in}, nil
}

// relistBytes is what a full relist of a node's assignments received.
type relistBytes struct {
	assignments int
	markers     int    // delete markers still in the stream
	in          uint64 // message bytes: nats.Statistics.InBytes
	msgs        uint64 // messages: nats.Statistics.InMsgs
	wire        uint64 // bytes read from the socket
}

// measureFullRelist lists every assignment of node, keys and values, on a
// fresh connection to url the way an agent without a stored revision does
// (a KV watch read to its end, then stopped), and measures what the
// connection received meanwhile: the message bytes nats.go counts and the
// bytes read from the socket (the handshake excluded).
func measureFullRelist(t *testing.T, url, node string) relistBytes {
	t.Helper()
	return measureListing(t, url, node)
}

// measureListing measures a KV watch of node's assignments with opts
// (none: a full relist) as measureFullRelist does.
func measureListing(t *testing.T, url, node string, opts ...jetstream.WatchOpt) relistBytes {
	t.Helper()
	d := &countingDialer{}
	nc, err := nats.Connect(url, nats.SetCustomDialer(d))
	if err != nil {
		t.Fatalf("full relist: connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	kv, err := js.KeyValue(ctx, messaging.BucketAssignments) // what the agent opens once per session
	if err != nil {
		t.Fatalf("full relist: open %s: %v", messaging.BucketAssignments, err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	st0, wire0 := nc.Stats(), d.in.Load()
	w, err := kv.Watch(ctx, messaging.AssignmentFilter(node), opts...)
	if err != nil {
		t.Fatalf("full relist: watch: %v", err)
	}
	metaOnly := len(opts) > 0
	var out relistBytes
	for e := range w.Updates() {
		if e == nil {
			break
		}
		if e.Operation() != jetstream.KeyValuePut {
			out.markers++
			continue
		}
		if len(e.Value()) == 0 && !metaOnly {
			t.Fatalf("full relist: %s has no value", e.Key())
		}
		out.assignments++
	}
	if err := w.Stop(); err != nil {
		t.Fatalf("full relist: stop: %v", err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	st1 := nc.Stats()
	out.in, out.msgs, out.wire = st1.InBytes-st0.InBytes, st1.InMsgs-st0.InMsgs, d.in.Load()-wire0
	return out
}

// onLine calls f with each log write that contains s, before writing it
// to w: slog handlers write one record per call.
type onLine struct {
	w io.Writer
	s string
	f func()
}

func (o onLine) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte(o.s)) {
		o.f()
	}
	return o.w.Write(b)
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

var resyncLine = regexp.MustCompile(`resync: (\d+) changes, (\d+) bytes received \((\d+) of them assignment values; (\d+) assignments listed\)".* messages=(\d+)`)

// deltaResyncs returns the changes, bytes received, value bytes, keys
// listed and messages received of every delta resync line logged so far.
func deltaResyncs(log string) [][5]int {
	var out [][5]int
	for _, m := range resyncLine.FindAllStringSubmatch(log, -1) {
		var r [5]int
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
	return startFakeAgentOn(t, url, dataDir, logs, nil)
}

// startFakeAgentOn is startFakeAgent on runtime frt when it is not nil:
// the runtime outlives the agent (its containers keep running across an
// agent restart, as runc's do) and is closed when the test ends.
func startFakeAgentOn(t *testing.T, url, dataDir string, logs io.Writer, frt *fake.Runtime) (*fake.Runtime, *nats.Conn, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	own := frt == nil
	if own {
		frt = fake.New("fake")
	} else {
		t.Cleanup(func() { frt.Close(context.Background()) })
	}
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
		if own {
			frt.Close(context.Background())
		}
	}
	t.Cleanup(stop)
	return frt, nc, stop
}

// runningContainers maps pod names to the ID of a running container of
// theirs (checkOneContainerEach counts them).
func runningContainers(t *testing.T, rt runtime.Runtime) map[string]string {
	t.Helper()
	out := map[string]string{}
	for pod, ids := range containersByPod(t, rt) {
		out[pod] = ids[0]
	}
	return out
}

// containersByPod maps pod names to the IDs of all their running
// containers.
func containersByPod(t *testing.T, rt runtime.Runtime) map[string][]string {
	t.Helper()
	list, err := rt.ListContainers(context.Background(), runtime.ContainerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, c := range list {
		if c.State == runtime.StateRunning {
			pod := c.Labels[labelPodName]
			out[pod] = append(out[pod], c.ID)
		}
	}
	return out
}

// checkOneContainerEach fails the test unless each of pods runs exactly
// one container (none more: no duplicate placement) and no other pod
// runs any, and unless the pods in same still run the container they ran
// in before.
func checkOneContainerEach(t *testing.T, rt runtime.Runtime, pods []string, before map[string]string, same []string) {
	t.Helper()
	byPod := containersByPod(t, rt)
	want := map[string]bool{}
	for _, p := range pods {
		want[p] = true
		if n := len(byPod[p]); n != 1 {
			t.Errorf("pod %s runs %d containers %v, want exactly one", p, n, byPod[p])
		}
	}
	for p, ids := range byPod {
		if !want[p] {
			t.Errorf("pod %s still runs containers %v", p, ids)
		}
	}
	for _, p := range same {
		if ids := byPod[p]; len(ids) != 1 || ids[0] != before[p] {
			t.Errorf("pod %s: container %s before the resync, %v after (restarted)", p, before[p], ids)
		}
	}
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
// and no unchanged pod restarts or runs twice. What the resync received,
// as the agent measured it on its connection, is compared with a full
// relist of the same assignments measured the same way.
func TestDeltaResyncAfterLinkLoss(t *testing.T) {
	cp := startControlPlane(t)
	proxy := newLinkProxy(t, cp.ns.Addr().String())
	logs := &lockedBuffer{}
	var wireAtLog atomic.Uint64 // bytes the proxy forwarded when the resync was logged
	logged := onLine{w: logs, s: `msg="resync: 1 changes`, f: func() { wireAtLog.CompareAndSwap(0, proxy.toClient.Load()) }}
	frt, nc, _ := startFakeAgent(t, proxy.url(), t.TempDir(), logged)

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
	cp.assign(t, handlerPod("added", "fake", "fake://run"))
	wireAtHeal := proxy.toClient.Load()
	proxy.heal()

	waitRunning(t, cp, "added")
	eventually(t, 10*time.Second, func() error {
		if id := runningContainers(t, frt)["gone"]; id != "" {
			return fmt.Errorf("pod gone still runs container %s", id)
		}
		return nil
	})
	var got [5]int
	eventually(t, 10*time.Second, func() error {
		rs := deltaResyncs(logs.String())
		if len(rs) == 0 {
			return fmt.Errorf("no delta resync logged")
		}
		got = rs[len(rs)-1]
		return nil
	})
	full := measureFullRelist(t, cp.url, "node-1")
	wire := wireAtLog.Load() - wireAtHeal
	keys := measureListing(t, cp.url, "node-1", jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	empty := measureFullRelist(t, cp.url, "node-2") // nothing assigned: the fixed cost
	t.Logf("delta resync (agent, nats.go InBytes): %d changes, %d bytes received in %d messages (%d of them values, %d keys listed)", got[0], got[1], got[4], got[2], got[3])
	t.Logf("full relist (test, same method): %d assignments, %d bytes received in %d messages; %d bytes read from the socket", full.assignments, full.in, full.msgs, full.wire)
	t.Logf("keys-only listing (test, as the resync's check): %d keys, %d bytes received in %d messages; %d bytes read from the socket", keys.assignments, keys.in, keys.msgs, keys.wire)
	t.Logf("a watch of no assignment (test): %d bytes received in %d messages; %d bytes read from the socket", empty.in, empty.msgs, empty.wire)
	t.Logf("socket bytes to the agent from heal to the resync's log line (reconnection, leases and statuses included): %d", wire)
	if got[0] != 1 {
		t.Errorf("resync fetched %d changes, want 1 (the added pod)", got[0])
	}
	if got[3] != 21 || full.assignments != 21 {
		t.Errorf("resync listed %d keys, the full relist %d assignments; want 21 each", got[3], full.assignments)
	}
	if got[1] <= got[2] || got[2] == 0 {
		t.Errorf("resync received %d bytes, %d of them values: want some values and more received than values (the keys listing)", got[1], got[2])
	}
	if uint64(got[1]) >= full.in {
		t.Errorf("delta resync received %d bytes, a full relist %d: want fewer", got[1], full.in)
	}
	// wire (the whole reconnection, 8.9–11.2 KB in runs on an idle
	// machine) is only logged: what else it holds grows with the load.
	if wire == 0 {
		t.Errorf("no socket bytes counted to the agent from heal to its resync")
	}
	checkOneContainerEach(t, frt, append(slices.Clone(names), "added"), before, names)
}

// TestDeltaResyncAfterRestart: an agent stopped while its assignments
// change resumes from its stored revision when it starts again, receives
// less than a full relist would, and keeps the containers of the
// unchanged pods (the runtime's containers outlive the agent).
func TestDeltaResyncAfterRestart(t *testing.T) {
	cp := startControlPlane(t)
	dataDir := t.TempDir()
	frt, _, stop := startFakeAgentOn(t, cp.url, dataDir, io.Discard, fake.New("fake"))
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("keep-%02d", i))
	}
	for _, n := range append(names, "gone") {
		cp.assign(t, handlerPod(n, "fake", "fake://run"))
	}
	waitRunning(t, cp, append(names, "gone")...)
	before := runningContainers(t, frt)
	stop()

	ctx := ctxT(t)
	if err := cp.buckets.Assignments.Delete(ctx, messaging.AssignmentKey("node-1", "default", "gone")); err != nil {
		t.Fatal(err)
	}
	cp.assign(t, handlerPod("added", "fake", "fake://run"))
	logs := &lockedBuffer{}
	frt2, _, _ := startFakeAgentOn(t, cp.url, dataDir, logs, frt)
	waitRunning(t, cp, "added")
	var got [5]int
	eventually(t, 10*time.Second, func() error {
		running := runningContainers(t, frt2)
		if running["gone"] != "" || running["keep-00"] == "" || running["added"] == "" {
			return fmt.Errorf("running %v, want keep-* and added", running)
		}
		rs := deltaResyncs(logs.String())
		if len(rs) == 0 {
			return fmt.Errorf("no delta resync logged")
		}
		got = rs[0]
		return nil
	})
	full := measureFullRelist(t, cp.url, "node-1")
	t.Logf("delta resync (agent, nats.go InBytes): %d changes, %d bytes received in %d messages (%d of them values, %d keys listed)", got[0], got[1], got[4], got[2], got[3])
	t.Logf("full relist (test, same method): %d assignments and %d delete markers, %d bytes received in %d messages; %d bytes read from the socket", full.assignments, full.markers, full.in, full.msgs, full.wire)
	// The added pod's value and the delete marker of gone.
	if got[0] != 2 {
		t.Errorf("resync fetched %d changes, want 2 (added, and the delete of gone)", got[0])
	}
	if uint64(got[1]) >= full.in {
		t.Errorf("delta resync received %d bytes, a full relist %d: want fewer", got[1], full.in)
	}
	checkOneContainerEach(t, frt2, append(slices.Clone(names), "added"), before, names)
}
