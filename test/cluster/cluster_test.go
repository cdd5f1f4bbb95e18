package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/leader"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// opBound bounds one API call with its retries: the API must serve again
// within it after a server is killed.
const opBound = 20 * time.Second

// attemptTimeout bounds one attempt of an API call.
const attemptTimeout = time.Second

// Load phases.
const (
	phaseBefore = 3 * time.Second
	phaseDuring = 3 * time.Second
	phaseAfter  = 3 * time.Second
	writers     = 4
)

// allStreams are the streams behind every bucket, object store and stream
// of the control plane.
var allStreams = []string{
	messaging.KVStream(messaging.BucketObjects),
	messaging.KVStream(messaging.BucketAssignments),
	messaging.KVStream(messaging.BucketLeases),
	messaging.KVStream(messaging.BucketHeartbeats),
	messaging.KVStream(messaging.BucketLeader),
	messaging.KVStream(messaging.BucketClaims),
	messaging.KVStream(messaging.BucketJoinTokens),
	messaging.KVStream(messaging.BucketNodeKeys),
	messaging.ObjectStream(messaging.StoreModules),
	messaging.StreamEvents,
}

// TestClusterServerKilledUnderLoad runs two control planes (one in
// process, one a separate process) on a three-server cluster with R3
// buckets, applies ConfigMaps continuously, kills (SIGKILL) the server
// leading the objects stream, keeps writing, restarts it, and checks that
// no acknowledged write is lost, that the API kept serving, that the
// restarted server caught up and that one control plane led the
// controllers at any time.
func TestClusterServerKilledUnderLoad(t *testing.T) {
	c := startCluster(t, 3)
	urls := c.urls()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nc, err := messaging.Connect(ctx, urls, "cluster-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// Buckets an older single-replica setup left: the control planes
	// scale them up to 3 replicas.
	eventually(t, 20*time.Second, func() error {
		_, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{Replicas: 1})
		return err
	})
	if _, err := messaging.EnsureEventsStream(ctx, js, messaging.BucketOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}

	ls := &leaders{leading: map[string]bool{}}
	startInProcess(t, clusterConfig(urls, t.TempDir(), "cp-1", func(m string) { ls.report("cp-1", m) }))
	startChild(t, urls, func(line string) { ls.report("cp-2", line) })
	for _, s := range allStreams {
		if got := replicas(ctx, t, js, s); got != 3 {
			t.Errorf("stream %s has %d replicas, want 3", s, got)
		}
		st, err := js.Stream(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		// Agents read edge-assign, edge-heartbeats and edge-leases by
		// direct gets (their permissions name the subjects); the others
		// are read from the stream leader.
		wantDirect := s == messaging.KVStream(messaging.BucketAssignments) || s == messaging.KVStream(messaging.BucketLeases) || s == messaging.KVStream(messaging.BucketHeartbeats)
		if got := st.CachedInfo().Config.AllowDirect; got != wantDirect {
			t.Errorf("stream %s: direct gets %v, want %v", s, got, wantDirect)
		}
	}
	waitOneLeader(ctx, t, js, ls)

	l := &load{cl: client.New(nc), stop: make(chan struct{})}
	start := time.Now()
	for i := range writers {
		l.wg.Add(1)
		go l.writer(i)
	}
	stopLoad := sync.OnceFunc(func() { close(l.stop); l.wg.Wait() })
	defer stopLoad()
	time.Sleep(phaseBefore) // load window, not a wait for a condition

	info, err := js.Stream(ctx, messaging.KVStream(messaging.BucketObjects))
	if err != nil {
		t.Fatal(err)
	}
	victim := c.index(info.CachedInfo().Cluster.Leader)
	if victim < 0 {
		t.Fatalf("no leader of the objects stream: %+v", info.CachedInfo().Cluster)
	}
	killedAt := time.Now()
	c.kill(victim)
	t.Logf("killed %s (leader of %s) with SIGKILL", c.nodes[victim].name, messaging.KVStream(messaging.BucketObjects))
	// Load with one server down: until writes are acknowledged again,
	// then phaseDuring more.
	var resumedAt time.Time
	eventually(t, opBound, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, a := range l.acks {
			if a.started.After(killedAt) {
				resumedAt = a.at
				return nil
			}
		}
		return errors.New("no write started after the kill acknowledged yet")
	})
	time.Sleep(phaseDuring) // load window with one server down
	restartedAt := time.Now()
	c.start(victim)
	c.waitHealthy(c.nodes[victim])
	c.waitAgreed()
	time.Sleep(phaseAfter) // load window after the restart
	stopAt := time.Now()
	stopLoad()
	if len(l.failures) > 0 {
		t.Fatalf("API did not serve within %s:\n%s", opBound, strings.Join(l.failures, "\n"))
	}

	// The restarted server holds every stream again, up to date.
	for _, s := range allStreams {
		eventually(t, 20*time.Second, func() error { return caughtUp(ctx, js, c, victim, s) })
	}

	// Every acknowledged write is readable, with its content.
	lost := verify(ctx, l.cl, l.acks)
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged writes lost or wrong, e.g.:\n%s", len(lost), len(l.acks), strings.Join(lost[:min(10, len(lost))], "\n"))
	}

	waitOneLeader(ctx, t, js, ls)
	ls.mu.Lock()
	if len(ls.overlaps) > 0 {
		t.Errorf("two control planes led the controllers at once: %v", ls.overlaps)
	}
	ls.mu.Unlock()

	// Clear errors when the cluster has too few servers; no scale-down.
	_, err = messaging.OpenBuckets(ctx, js, messaging.BucketOptions{Replicas: 5})
	if err == nil || !strings.Contains(err.Error(), "fewer than 5 JetStream servers") {
		t.Errorf("open buckets with 5 replicas on 3 servers: %v, want an error naming too few servers", err)
	}
	if _, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	for _, s := range allStreams {
		if got := replicas(ctx, t, js, s); got != 3 {
			t.Errorf("stream %s has %d replicas after opening with 1, want 3 (never scaled down)", s, got)
		}
	}

	before, during, after := l.rates(start, killedAt, resumedAt, restartedAt, stopAt)
	gap, gapAt := l.longestGap(start, stopAt)
	sb, sd, sa := l.staleIn(start, killedAt, restartedAt, stopAt)
	t.Logf("acknowledged writes: %d, lost: %d; reads that first missed a just acknowledged write: %d before, %d during, %d after the kill", len(l.acks), len(lost), sb, sd, sa)
	t.Logf("writes/s: before the kill %.0f, with %s down (once writes resumed) %.0f, after its restart %.0f", before, c.nodes[victim].name, during, after)
	t.Logf("unavailability window (longest gap between acknowledged writes): %s, starting %s after the kill; slowest write %s",
		gap.Round(time.Millisecond), gapAt.Sub(killedAt).Round(time.Millisecond), l.slowest.Round(time.Millisecond))
	for _, n := range c.nodes {
		out, _ := os.ReadFile(n.logPath())
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "leader") && (strings.Contains(line, "KV_edge-objects") || strings.Contains(line, "metadata")) {
				t.Logf("%s: %s", n.name, line)
			}
		}
	}
	t.Logf("killed at %s, restarted at %s", killedAt.UTC().Format("15:04:05.000"), restartedAt.UTC().Format("15:04:05.000"))
	now := ls.current()
	ls.mu.Lock()
	t.Logf("controller leadership: %s; leading now: %v", strings.Join(ls.changes, ", "), now)
	ls.mu.Unlock()
}

// TestReplicasErrors checks the errors of a replica count the NATS behind
// cannot hold.
func TestReplicasErrors(t *testing.T) {
	c := startCluster(t, 1) // a standalone server
	for _, tc := range []struct {
		name string
		cfg  controlplane.Config
		want string
	}{
		{"standalone server", controlplane.Config{NATSURL: c.urls(), Replicas: 3}, "not part of a JetStream cluster"},
		{"embedded server", controlplane.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Replicas: 3}, "--nats-url"},
		{"too many", controlplane.Config{NATSURL: c.urls(), Replicas: 6}, "want 1 to 5"},
		{"negative", controlplane.Config{NATSURL: c.urls(), Replicas: -1}, "want 1 to 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := controlplane.Run(ctx, tc.cfg, func(string) { t.Error("control plane started") })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error with %q", err, tc.want)
			}
		})
	}
	// Nothing was stored by the refused starts.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := messaging.Connect(ctx, c.urls(), "cluster-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	names := js.StreamNames(ctx)
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) > 0 {
		t.Errorf("streams after refused starts: %v, want none", got)
	}
}

func replicas(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) int {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	return s.CachedInfo().Config.Replicas
}

// waitOneLeader waits until exactly one control plane leads the
// controllers and holds the lease.
func waitOneLeader(ctx context.Context, t *testing.T, js jetstream.JetStream, ls *leaders) {
	t.Helper()
	leases, err := js.KeyValue(ctx, messaging.BucketLeader)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*controllers.DefaultLeaderTTL, func() error {
		ids := ls.current()
		if len(ids) != 1 {
			return fmt.Errorf("control planes leading: %v, want one", ids)
		}
		e, err := leases.Get(ctx, messaging.LeaderKey(controllers.LeaderLease))
		if err != nil {
			return fmt.Errorf("leader lease: %w", err)
		}
		var rec leader.Record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return fmt.Errorf("leader lease: %w", err)
		}
		if rec.Holder != ids[0] {
			return fmt.Errorf("lease held by %q, but %q leads", rec.Holder, ids[0])
		}
		return nil
	})
}

// caughtUp reports whether server i's own copy of stream has every
// message the stream leader has.
func caughtUp(ctx context.Context, js jetstream.JetStream, c *natsCluster, i int, stream string) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	ci := s.CachedInfo().Cluster
	if ci == nil || ci.Leader == "" {
		return fmt.Errorf("stream %s has no leader", stream)
	}
	if ci.Leader != c.nodes[i].name {
		found := false
		for _, r := range ci.Replicas {
			if r.Name == c.nodes[i].name {
				found = true
				if !r.Current {
					return fmt.Errorf("stream %s: %s not current (lag %d)", stream, r.Name, r.Lag)
				}
			}
		}
		if !found {
			return fmt.Errorf("stream %s: %s is not a replica (leader %s, replicas %+v)", stream, c.nodes[i].name, ci.Leader, ci.Replicas)
		}
	}
	want, err := localStream(c.nodes[c.index(ci.Leader)], stream)
	if err != nil {
		return err
	}
	got, err := localStream(c.nodes[i], stream)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("stream %s: %s holds %+v, leader %s holds %+v", stream, c.nodes[i].name, got, ci.Leader, want)
	}
	return nil
}

// ack is an acknowledged write.
type ack struct {
	name, rv, value string
	started, at     time.Time // first attempt, acknowledgement
}

// load applies ConfigMaps from several writers, each call retried until
// opBound, and reads some back.
type load struct {
	cl   *client.Client
	stop chan struct{}
	wg   sync.WaitGroup

	mu         sync.Mutex
	acks       []ack
	failures   []string
	staleReads []time.Time
	slowest    time.Duration
}

// retry calls f until it succeeds, it fails with an error that retrying
// cannot fix, or opBound passes.
func retry(f func(ctx context.Context) error) (time.Duration, error) {
	start := time.Now()
	for {
		// Short attempts: the measured unavailability is then the
		// cluster's, not the client's timeout.
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		err := f(ctx)
		cancel()
		switch {
		case err == nil:
			return time.Since(start), nil
		case client.IsInvalid(err), client.CodeOf(err) == client.CodeForbidden:
			return time.Since(start), err
		case time.Since(start) > opBound:
			return time.Since(start), fmt.Errorf("still failing after %s: %w", opBound, err)
		}
		time.Sleep(100 * time.Millisecond) // retry pause
	}
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *load) writer(id int) {
	defer l.wg.Done()
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		name := fmt.Sprintf("w%d-%05d", id, n)
		value := fmt.Sprintf("%s@%d", name, time.Now().UnixNano())
		var rv string
		started := time.Now()
		took, err := retry(func(ctx context.Context) error {
			cm := &manifests.ConfigMap{Data: map[string]string{"v": value}}
			cm.Name = name
			_, obj, err := l.cl.Apply(ctx, cm)
			if err == nil {
				rv = obj.GetObjectMeta().ResourceVersion
			}
			return err
		})
		if err != nil {
			l.fail("apply %s: %v", name, err)
			return
		}
		l.mu.Lock()
		l.acks = append(l.acks, ack{name: name, rv: rv, value: value, started: started, at: time.Now()})
		l.slowest = max(l.slowest, took)
		l.mu.Unlock()
		if n%4 != 0 {
			continue
		}
		stale := false
		_, err = retry(func(ctx context.Context) error {
			err := check(ctx, l.cl, ack{name: name, rv: rv, value: value})
			if err != nil && !stale {
				stale = client.IsNotFound(err) || errors.Is(err, errMismatch)
			}
			return err
		})
		if err != nil {
			l.fail("get %s: %v", name, err)
			return
		}
		if stale {
			l.mu.Lock()
			l.staleReads = append(l.staleReads, time.Now())
			l.mu.Unlock()
		}
	}
}

var errMismatch = errors.New("content differs")

// check reads a's object through the API and compares it with a.
func check(ctx context.Context, cl *client.Client, a ack) error {
	obj, err := cl.Get(ctx, "configmaps", "default", a.name)
	if err != nil {
		return err
	}
	cm, ok := obj.(*manifests.ConfigMap)
	if !ok {
		return fmt.Errorf("%s: got a %T", a.name, obj)
	}
	if cm.Data["v"] != a.value || cm.ResourceVersion != a.rv {
		return fmt.Errorf("%s: %w: got v=%q rv=%s, acknowledged v=%q rv=%s", a.name, errMismatch, cm.Data["v"], cm.ResourceVersion, a.value, a.rv)
	}
	return nil
}

// verify reads back every acknowledged write; it returns what is missing
// or different.
func verify(ctx context.Context, cl *client.Client, acks []ack) []string {
	var (
		mu   sync.Mutex
		bad  []string
		wg   sync.WaitGroup
		next = make(chan ack)
	)
	for range 4 {
		wg.Go(func() {
			for a := range next {
				if _, err := retry(func(ctx context.Context) error { return check(ctx, cl, a) }); err != nil {
					mu.Lock()
					bad = append(bad, err.Error())
					mu.Unlock()
				}
			}
		})
	}
	for _, a := range acks {
		select {
		case next <- a:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return bad
}

// rates returns the acknowledged writes per second in [start, kill),
// [resumed, restart) and [restart, stop).
func (l *load) rates(start, kill, resumed, restart, stop time.Time) (before, during, after float64) {
	count := func(from, to time.Time) float64 {
		n := 0
		for _, a := range l.acks {
			if !a.at.Before(from) && a.at.Before(to) {
				n++
			}
		}
		return float64(n) / to.Sub(from).Seconds()
	}
	return count(start, kill), count(resumed, restart), count(restart, stop)
}

// staleIn counts the stale reads in [start, kill), [kill, restart) and
// [restart, stop).
func (l *load) staleIn(start, kill, restart, stop time.Time) (before, during, after int) {
	for _, at := range l.staleReads {
		switch {
		case at.Before(kill):
			before++
		case at.Before(restart):
			during++
		case at.Before(stop):
			after++
		}
	}
	return before, during, after
}

// longestGap returns the longest time in [start, stop] without an
// acknowledged write, and when it began.
func (l *load) longestGap(start, stop time.Time) (time.Duration, time.Time) {
	times := []time.Time{start}
	for _, a := range l.acks {
		times = append(times, a.at)
	}
	times = append(times, stop)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	at := start
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d > gap {
			gap, at = d, times[i-1]
		}
	}
	return gap, at
}
