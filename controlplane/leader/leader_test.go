package leader

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// candidate runs one elector and records whether it leads.
type candidate struct {
	id      string
	leading atomic.Bool
	seen    atomic.Value // the holder it last observed
	starts  atomic.Int32
	stops   atomic.Int32
	cancel  context.CancelFunc
	done    chan struct{}
}

func campaign(t *testing.T, kv KV, id string, ttl time.Duration) *candidate {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{id: id, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		err := Elect(ctx, kv, messaging.LeaderKey("test"), id, ttl, Callbacks{
			OnStartedLeading: func(ctx context.Context) {
				c.starts.Add(1)
				c.leading.Store(true)
				<-ctx.Done()
				c.leading.Store(false)
			},
			OnStoppedLeading: func() { c.stops.Add(1) },
			OnNewLeader:      func(id string) { c.seen.Store(id) },
		})
		if err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func leaders(cs ...*candidate) []string {
	var out []string
	for _, c := range cs {
		if c.leading.Load() {
			out = append(out, c.id)
		}
	}
	return out
}

func exactlyOne(cs ...*candidate) func() error {
	return func() error {
		if l := leaders(cs...); len(l) != 1 {
			return fmt.Errorf("leaders %v, want exactly one", l)
		}
		return nil
	}
}

func TestOneLeaderThenFailoverOnCancel(t *testing.T) {
	env := controllertest.Start(t)
	ttl := time.Second
	a := campaign(t, env.Buckets.Leader, "a", ttl)
	b := campaign(t, env.Buckets.Leader, "b", ttl)
	controllertest.Eventually(t, 5*time.Second, exactlyOne(a, b))
	// It stays one leader over several renewals.
	for range 20 {
		if l := leaders(a, b); len(l) != 1 {
			t.Fatalf("leaders %v during renewals", l)
		}
		time.Sleep(ttl / 10)
	}
	first, second := a, b
	if b.leading.Load() {
		first, second = b, a
	}
	stopped := time.Now()
	first.cancel()
	<-first.done
	if first.stops.Load() != 1 {
		t.Fatalf("OnStoppedLeading called %d times", first.stops.Load())
	}
	controllertest.Eventually(t, ttl, func() error {
		if !second.leading.Load() {
			return errors.New("follower has not taken over")
		}
		return nil
	})
	t.Logf("takeover after %v", time.Since(stopped))
	entry, err := env.Buckets.Leader.Get(context.Background(), messaging.LeaderKey("test"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(entry.Value()); !strings.Contains(got, `"holder":"`+second.id+`"`) {
		t.Fatalf("lease record %s", got)
	}
}

// crashKV lets a test stop one elector's writes (a crashed or cut-off
// process) without it releasing the lease.
type crashKV struct {
	KV
	mu   sync.Mutex
	dead bool
}

var errCut = errors.New("connection cut")

func (k *crashKV) cut() { k.mu.Lock(); k.dead = true; k.mu.Unlock() }
func (k *crashKV) isDead() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dead
}
func (k *crashKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if k.isDead() {
		return nil, errCut
	}
	return k.KV.Get(ctx, key)
}
func (k *crashKV) Create(ctx context.Context, key string, v []byte, o ...jetstream.KVCreateOpt) (uint64, error) {
	if k.isDead() {
		return 0, errCut
	}
	return k.KV.Create(ctx, key, v, o...)
}
func (k *crashKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if k.isDead() {
		return 0, errCut
	}
	return k.KV.Update(ctx, key, v, rev)
}
func (k *crashKV) Delete(ctx context.Context, key string, o ...jetstream.KVDeleteOpt) error {
	if k.isDead() {
		return errCut
	}
	return k.KV.Delete(ctx, key, o...)
}

func TestSplitLeaderStepsDownBeforeTakeover(t *testing.T) {
	env := controllertest.Start(t)
	ttl := 600 * time.Millisecond
	kvA := &crashKV{KV: env.Buckets.Leader}
	a := campaign(t, kvA, "a", ttl)
	controllertest.Eventually(t, 5*time.Second, exactlyOne(a))
	b := campaign(t, env.Buckets.Leader, "b", ttl)
	controllertest.Eventually(t, 5*time.Second, func() error {
		if s, _ := b.seen.Load().(string); s != "a" {
			return fmt.Errorf("b sees leader %q", s)
		}
		return nil
	})
	if l := leaders(a, b); len(l) != 1 || l[0] != "a" {
		t.Fatalf("leaders %v, want [a]", l)
	}
	cut := time.Now()
	kvA.cut()
	// Never two leaders: a steps down before b may take over.
	deadline := time.Now().Add(4 * ttl)
	for time.Now().Before(deadline) && !b.leading.Load() {
		if l := leaders(a, b); len(l) > 1 {
			t.Fatalf("two leaders %v", l)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a.leading.Load() {
		t.Fatal("a still leads after losing the store")
	}
	if a.stops.Load() != 1 {
		t.Fatalf("a stopped %d times", a.stops.Load())
	}
	if !b.leading.Load() {
		t.Fatal("b did not take over")
	}
	// The last renewal was at most ttl/3 before the cut.
	if d := time.Since(cut); d < ttl*2/3-50*time.Millisecond {
		t.Fatalf("b took over %v after the cut, before the lease expired", d)
	}
}

func TestStaleLeaseOfDeadProcessIsTakenOver(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	ttl := 300 * time.Millisecond
	if _, err := env.Buckets.Leader.Create(ctx, messaging.LeaderKey("test"), []byte(`{"holder":"ghost"}`)); err != nil {
		t.Fatal(err)
	}
	var seen []string
	var mu sync.Mutex
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started := make(chan struct{})
	go func() {
		_ = Elect(lctx, env.Buckets.Leader, messaging.LeaderKey("test"), "b", ttl, Callbacks{
			OnStartedLeading: func(context.Context) { close(started) },
			OnNewLeader:      func(id string) { mu.Lock(); seen = append(seen, id); mu.Unlock() },
		})
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no takeover of a stale lease")
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[ghost b]" {
		t.Fatalf("observed leaders %v", seen)
	}
}

func TestBadArguments(t *testing.T) {
	if err := Elect(context.Background(), nil, "k", "id", 0, Callbacks{}); err == nil {
		t.Fatal("zero ttl accepted")
	}
	if err := Elect(context.Background(), nil, "k", "", time.Second, Callbacks{}); err == nil {
		t.Fatal("empty id accepted")
	}
}
