package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/nodes"
	"github.com/edgeorch/edgeorch/controlplane/publish"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// eventually polls cond until it holds, or fails the test after 20s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connect(t *testing.T, url, name string) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := messaging.Connect(ctx, url, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runPublisher runs a control plane's publisher on nc, fed by w, until the
// end of the test; it returns once the first watch has synced.
func runPublisher(t *testing.T, env *natstest.Env, w publish.Watcher, nc *nats.Conn, opts publish.Options) *publish.Publisher {
	p, _ := runStoppablePublisher(t, env, w, nc, opts)
	return p
}

// runStoppablePublisher is runPublisher that also returns a function that
// stops the publisher.
func runStoppablePublisher(t *testing.T, env *natstest.Env, w publish.Watcher, nc *nats.Conn, opts publish.Options) (*publish.Publisher, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := messaging.EnsureEventsStream(ctx, env.JS, messaging.BucketOptions{}); err != nil {
		t.Fatal(err)
	}
	synced := make(chan struct{}, 1)
	onSynced := opts.OnSynced
	opts.OnSynced = func() {
		if onSynced != nil {
			onSynced()
		}
		select {
		case synced <- struct{}{}:
		default:
		}
	}
	p, err := publish.New(nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx, w) })
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	select {
	case <-synced:
	case <-time.After(20 * time.Second):
		t.Fatal("publisher never synced")
	}
	return p, stop
}

// subscribe subscribes nc to subjects, as `nats sub` would.
func subscribe(t *testing.T, nc *nats.Conn, subjects ...string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 1024)
	for _, s := range subjects {
		sub, err := nc.ChanSubscribe(s, ch)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// sentinel stores one more message in the stream, after everything the
// publishers had acknowledged, and returns its public subject. The stream
// republishes in order, so once a subscriber gets it, it has got every
// copy republished before.
func sentinel(t *testing.T, env *natstest.Env, n int) string {
	t.Helper()
	public := messaging.NodeStatusSubject(fmt.Sprintf("sentinel-%d", n))
	m := nats.NewMsg(messaging.IngestSubject(public))
	m.Data = []byte("{}")
	m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("sentinel/%d", n))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := env.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	return public
}

// until returns the messages ch receives before one on subject.
func until(t *testing.T, ch chan *nats.Msg, subject string) []*nats.Msg {
	t.Helper()
	var got []*nats.Msg
	for {
		select {
		case m := <-ch:
			if m.Subject == subject {
				return got
			}
			got = append(got, m)
		case <-time.After(20 * time.Second):
			t.Fatalf("no message on %s; got %d others", subject, len(got))
		}
	}
}

func subjects(msgs []*nats.Msg) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Subject)
	}
	return out
}

// settled reports whether p sent n messages and each was acknowledged.
func settled(p *publish.Publisher, n uint64) bool {
	s := p.Stats()
	return s.Published == n && s.Acked == n
}

// TestTwoControlPlanesExactlyOnce runs two publishers, as two control
// planes do, started at different times on their own connections and fed
// by the same store: each change is published by both with the same
// Nats-Msg-Id, and a plain subscriber and a consumer created afterwards
// see it once, under its public subject.
func TestTwoControlPlanesExactlyOnce(t *testing.T) {
	env := natstest.Start(t, "two-cps")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := store.New(env.Buckets.Objects)
	integration := connect(t, env.URL, "integration")
	public := subscribe(t, integration, messaging.EventsFilter, messaging.StatusFilter)

	// The first control plane alone sees a pod created, then a change
	// that publishes nothing (a label).
	p1 := runPublisher(t, env, st, connect(t, env.URL, "cp-1"), publish.Options{})
	podA := &manifests.Pod{}
	podA.Namespace, podA.Name = "apps", "a"
	obj, err := st.Create(ctx, podA)
	if err != nil {
		t.Fatal(err)
	}
	podA = obj.(*manifests.Pod)
	podA.Labels = map[string]string{"tier": "web"}
	if obj, err = st.Update(ctx, podA); err != nil {
		t.Fatal(err)
	}
	podA = obj.(*manifests.Pod)
	eventually(t, "the first pod status acknowledged", func() bool { return settled(p1, 1) })

	// The second control plane starts: pod a, as labelled, is its baseline.
	p2 := runPublisher(t, env, st, connect(t, env.URL, "cp-2"), publish.Options{})
	ingest := subscribe(t, integration, messaging.IngestFilter)

	// Changes after both synced.
	podA.Status.Phase = "Running"
	if _, err := st.Update(ctx, podA); err != nil {
		t.Fatal(err)
	}
	podB := &manifests.Pod{}
	podB.Namespace, podB.Name = "apps", "b.1"
	obj, err = st.Create(ctx, podB)
	if err != nil {
		t.Fatal(err)
	}
	podB = obj.(*manifests.Pod)
	if err := events.NewRecorder(st, events.Options{Component: "test"}).Eventf(ctx, podA, manifests.EventNormal, "Started", "started"); err != nil {
		t.Fatal(err)
	}
	node := &manifests.Node{}
	node.Name = "edge-1"
	node.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: manifests.ConditionTrue}}
	obj, err = st.Create(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	node = obj.(*manifests.Node)
	node.Status.Conditions[0].Status = manifests.ConditionUnknown
	node.Spec.Taints = []manifests.Taint{{Key: nodes.TaintUnreachable, Effect: "NoExecute"}}
	if _, err := st.Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, "pods", podB.Namespace, podB.Name, 0); err != nil {
		t.Fatal(err)
	}

	podASubject, podBSubject := messaging.PodStatusSubject("apps", "a"), messaging.PodStatusSubject("apps", "b.1")
	nodeSubject := messaging.NodeStatusSubject("edge-1")
	after := []string{podASubject, podBSubject, messaging.EventSubject("apps", "Pod", "a"), nodeSubject, nodeSubject, podBSubject}
	want := append([]string{podASubject}, after...)
	eventually(t, "every message acknowledged", func() bool {
		return settled(p1, uint64(len(want))) && settled(p2, uint64(len(after)))
	})
	end := sentinel(t, env, 1)

	// The plain subscriber got each change once, with distinct ids.
	got := until(t, public, end)
	if !slices.Equal(subjects(got), want) {
		t.Fatalf("plain subscriber got %v, want %v", subjects(got), want)
	}
	ids := map[string]bool{}
	for _, m := range got {
		id := m.Header.Get(nats.MsgIdHdr)
		if id == "" || ids[id] {
			t.Fatalf("message on %s has id %q (seen: %v)", m.Subject, id, ids[id])
		}
		ids[id] = true
		if m.Header.Get("Nats-Stream") != messaging.StreamEvents {
			t.Fatalf("message on %s was not republished by the stream: headers %v", m.Subject, m.Header)
		}
	}
	var ps publish.PodStatus
	if err := json.Unmarshal(got[1].Data, &ps); err != nil || ps.Phase != "Running" || ps.Name != "a" {
		t.Fatalf("pod status %s: %+v, %v", got[1].Data, ps, err)
	}

	// Both control planes sent each later change, with the same id.
	copies := map[string]int{}
	for _, m := range until(t, ingest, messaging.IngestSubject(end)) {
		copies[m.Header.Get(nats.MsgIdHdr)]++
	}
	for _, m := range got[1:] {
		if n := copies[m.Header.Get(nats.MsgIdHdr)]; n != 2 {
			t.Errorf("id %s (%s) was sent %d times, want once per control plane", m.Header.Get(nats.MsgIdHdr), m.Subject, n)
		}
	}
	if len(copies) != len(after) {
		t.Errorf("the control planes sent %d distinct ids, want %d: %v", len(copies), len(after), copies)
	}
	s1, s2 := p1.Stats(), p2.Stats()
	if stored := s1.Acked - s1.Duplicates + s2.Acked - s2.Duplicates; stored != uint64(len(want)) || s1.Dropped+s2.Dropped != 0 {
		t.Errorf("stats %+v and %+v: %d stored, want %d", s1, s2, stored, len(want))
	}

	// A consumer created afterwards reads each once, under its public subject.
	cons, err := env.JS.CreateOrUpdateConsumer(ctx, messaging.StreamEvents, jetstream.ConsumerConfig{
		Durable: "late-reader", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(len(want)+10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for m := range batch.Messages() {
		stored = append(stored, m.Subject())
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(stored, append(want, end)) {
		t.Fatalf("the consumer read %v, want %v", stored, append(want, end))
	}
}

// holdProxy forwards TCP connections to a server and can hold back what
// the server sends (its acknowledgements) while letting the client's
// messages through.
type holdProxy struct {
	ln   net.Listener
	mu   sync.Mutex
	cond *sync.Cond
	held bool
}

func startHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.held = false
		for _, c := range conns {
			c.Close()
		}
		p.cond.Broadcast()
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			conns = append(conns, c, s)
			p.mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(s, c); s.Close(); c.Close() })
			wg.Go(func() { p.down(c, s) })
		}
	})
	return p
}

func (p *holdProxy) down(c, s net.Conn) {
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.held {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *holdProxy) hold(on bool) {
	p.mu.Lock()
	p.held = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *holdProxy) url() string { return "nats://" + p.ln.Addr().String() }

// TestSlowAckStillDelivered holds back the stream's acknowledgements to a
// publisher beyond its AckTimeout: the message is delivered at once, the
// publisher sends it again until acknowledged, and the copies are dropped
// as duplicates.
func TestSlowAckStillDelivered(t *testing.T) {
	env := natstest.Start(t, "slow-ack")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := store.New(env.Buckets.Objects)
	proxy := startHoldProxy(t, env.Server.Addr().String())
	p := runPublisher(t, env, st, connect(t, proxy.url(), "cp-slow"), publish.Options{AckTimeout: 200 * time.Millisecond})
	public := subscribe(t, connect(t, env.URL, "integration"), messaging.EventsFilter, messaging.StatusFilter)

	proxy.hold(true)
	pod := &manifests.Pod{}
	pod.Namespace, pod.Name = "apps", "slow"
	if _, err := st.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-public:
		if m.Subject != messaging.PodStatusSubject("apps", "slow") {
			t.Fatalf("got a message on %s", m.Subject)
		}
	case <-ctx.Done():
		t.Fatal("the message was not delivered while its ack was held")
	}
	eventually(t, "the publisher to send the message again", func() bool { return p.Stats().Retries >= 1 })
	if s := p.Stats(); s.Acked != 0 {
		t.Fatalf("acknowledged while the acks were held: %+v", s)
	}
	proxy.hold(false)
	eventually(t, "the message acknowledged", func() bool { return settled(p, 1) })
	if s := p.Stats(); s.Duplicates != 1 || s.Dropped != 0 {
		t.Fatalf("stats %+v: want the acknowledged copy to be a duplicate", s)
	}
	if rest := until(t, public, sentinel(t, env, 1)); len(rest) != 0 {
		t.Fatalf("the plain subscriber got %d more copies: %v", len(rest), subjects(rest))
	}
	s, err := env.JS.Stream(ctx, messaging.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("the stream holds %d messages, want the pod status and the sentinel", n)
	}
}

// TestStreamGoneThenBack publishes while the stream does not exist: the
// publisher keeps sending until the stream is back, and the message is
// delivered once.
func TestStreamGoneThenBack(t *testing.T) {
	env := natstest.Start(t, "stream-gone")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := store.New(env.Buckets.Objects)
	p := runPublisher(t, env, st, connect(t, env.URL, "cp"), publish.Options{})
	public := subscribe(t, connect(t, env.URL, "integration"), messaging.EventsFilter, messaging.StatusFilter)
	if err := env.JS.DeleteStream(ctx, messaging.StreamEvents); err != nil {
		t.Fatal(err)
	}
	node := &manifests.Node{}
	node.Name = "edge-9"
	if _, err := st.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the publisher to send again", func() bool { return p.Stats().Retries >= 2 })
	if _, err := messaging.EnsureEventsStream(ctx, env.JS, messaging.BucketOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message acknowledged", func() bool { return settled(p, 1) })
	got := until(t, public, sentinel(t, env, 1))
	if want := []string{messaging.NodeStatusSubject("edge-9")}; !slices.Equal(subjects(got), want) {
		t.Fatalf("plain subscriber got %v, want %v", subjects(got), want)
	}
	if s := p.Stats(); s.Dropped != 0 || s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// gatedWatcher is a store whose watch the test can cut, and keep from
// starting again until it reopens it.
type gatedWatcher struct {
	st      *store.Store
	mu      sync.Mutex
	open    chan struct{}
	cancel  context.CancelFunc
	waiting int
}

func newGatedWatcher(st *store.Store) *gatedWatcher {
	w := &gatedWatcher{st: st, open: make(chan struct{})}
	close(w.open)
	return w
}

func (w *gatedWatcher) WatchAll(ctx context.Context) (<-chan store.Event, error) {
	w.mu.Lock()
	open := w.open
	w.waiting++
	w.mu.Unlock()
	select {
	case <-open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	wctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	w.waiting--
	w.cancel = cancel
	w.mu.Unlock()
	return w.st.WatchAll(wctx)
}

// cut ends the current watch and returns once the publisher waits to
// watch again.
func (w *gatedWatcher) cut(t *testing.T) {
	w.mu.Lock()
	w.open = make(chan struct{})
	w.cancel()
	w.mu.Unlock()
	eventually(t, "the publisher to watch again", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.waiting == 1
	})
}

func (w *gatedWatcher) reopen() {
	w.mu.Lock()
	close(w.open)
	w.mu.Unlock()
}

// TestCatchUpAfterWatchRestart cuts one control plane's watch while the
// other publishes a change followed by one that publishes nothing: on its
// re-watch the first sees only the later resourceVersion, and must not
// publish the change again under that id. A change nobody published while
// its watch was cut is published.
func TestCatchUpAfterWatchRestart(t *testing.T) {
	env := natstest.Start(t, "catch-up")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := store.New(env.Buckets.Objects)
	public := subscribe(t, connect(t, env.URL, "integration"), messaging.EventsFilter, messaging.StatusFilter)
	w := newGatedWatcher(st)
	var syncs atomic.Int32
	p1 := runPublisher(t, env, w, connect(t, env.URL, "cp-1"), publish.Options{Retry: 20 * time.Millisecond, OnSynced: func() { syncs.Add(1) }})
	p2, stop2 := runStoppablePublisher(t, env, st, connect(t, env.URL, "cp-2"), publish.Options{})

	pod := &manifests.Pod{}
	pod.Namespace, pod.Name = "apps", "x"
	obj, err := st.Create(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	pod = obj.(*manifests.Pod)
	node := &manifests.Node{}
	node.Name = "edge-2"
	node.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: manifests.ConditionTrue}}
	obj, err = st.Create(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	node = obj.(*manifests.Node)
	eventually(t, "both publishers acknowledged", func() bool { return settled(p1, 2) && settled(p2, 2) })

	// The first control plane's watch is cut: the second publishes the
	// pod's change; the label change after it publishes nothing.
	w.cut(t)
	pod.Status.Phase = "Running"
	if obj, err = st.Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod = obj.(*manifests.Pod)
	pod.Labels = map[string]string{"a": "b"}
	if _, err := st.Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second publisher acknowledged", func() bool { return settled(p2, 3) })
	w.reopen()
	eventually(t, "the first publisher caught up", func() bool { return syncs.Load() == 2 })
	if s := p1.Stats(); s.Published != 2 {
		t.Fatalf("the first publisher published again on catching up: %+v", s)
	}

	// Now only the first runs, and its watch is cut while the node
	// becomes NotReady: its catch-up publishes that.
	stop2()
	w.cut(t)
	node.Status.Conditions[0].Status = manifests.ConditionFalse
	if _, err := st.Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	w.reopen()
	eventually(t, "the first publisher caught up", func() bool { return syncs.Load() == 3 })
	eventually(t, "the node status acknowledged", func() bool { return settled(p1, 3) })

	podSubject, nodeSubject := messaging.PodStatusSubject("apps", "x"), messaging.NodeStatusSubject("edge-2")
	got := until(t, public, sentinel(t, env, 1))
	if want := []string{podSubject, nodeSubject, podSubject, nodeSubject}; !slices.Equal(subjects(got), want) {
		t.Fatalf("plain subscriber got %v, want %v", subjects(got), want)
	}
	var ns publish.NodeStatus
	if err := json.Unmarshal(got[3].Data, &ns); err != nil || ns.State != publish.NodeNotReady {
		t.Fatalf("node status %s: %v", got[3].Data, err)
	}
}
