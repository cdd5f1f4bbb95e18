package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/leader"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// cuttableKV is a leases bucket whose lease writes can be cut, as for a
// control-plane process that lost NATS (its node-lease watch still runs).
type cuttableKV struct {
	jetstream.KeyValue
	cut atomic.Bool
}

var errCut = errors.New("cut off")

func (k *cuttableKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if k.cut.Load() {
		return nil, errCut
	}
	return k.KeyValue.Get(ctx, key)
}
func (k *cuttableKV) Create(ctx context.Context, key string, v []byte, o ...jetstream.KVCreateOpt) (uint64, error) {
	if k.cut.Load() {
		return 0, errCut
	}
	return k.KeyValue.Create(ctx, key, v, o...)
}
func (k *cuttableKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if k.cut.Load() {
		return 0, errCut
	}
	return k.KeyValue.Update(ctx, key, v, rev)
}
func (k *cuttableKV) Delete(ctx context.Context, key string, o ...jetstream.KVDeleteOpt) error {
	if k.cut.Load() {
		return errCut
	}
	return k.KeyValue.Delete(ctx, key, o...)
}

func holder(ctx context.Context, kv jetstream.KeyValue) (string, error) {
	e, err := kv.Get(ctx, messaging.LeaderKey(LeaderLease))
	if err != nil {
		return "", err
	}
	var r leader.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return "", err
	}
	return r.Holder, nil
}

// TestLeaderFailover runs two control planes' controllers against one
// NATS: one leads and schedules; when it is cut off it stops and the other
// takes over and schedules; when that one stops cleanly the lease is
// released.
func TestLeaderFailover(t *testing.T) {
	env := controllertest.Start(t)
	st, b := env.Store, env.Buckets
	ctx := context.Background()
	if _, err := st.Create(ctx, newNode("node-a", "a")); err != nil {
		t.Fatal(err)
	}
	stop := heartbeat(ctx, t, b.Leases, "node-a", 100*time.Millisecond)
	defer stop()

	ttl := 600 * time.Millisecond
	type cp struct {
		id     string
		kv     *cuttableKV
		cancel context.CancelFunc
		done   chan error
	}
	start := func(id string) *cp {
		c := &cp{id: id, kv: &cuttableKV{KeyValue: b.Leader}, done: make(chan error, 1)}
		bc := *b
		bc.Leader = c.kv
		var cctx context.Context
		cctx, c.cancel = context.WithCancel(ctx)
		go func() {
			c.done <- RunWithOptions(cctx, st, &bc, Options{NodeGrace: 2 * time.Second, LeaderID: id, LeaderTTL: ttl})
		}()
		t.Cleanup(func() { c.cancel(); <-c.done })
		return c
	}
	one, two := start("cp-1"), start("cp-2")
	var first string
	controllertest.Eventually(t, 10*time.Second, func() (err error) {
		first, err = holder(ctx, b.Leader)
		return err
	})
	scheduled := func(pod, node string) func() error {
		return func() error {
			p, err := getPod(ctx, st, pod)
			if err != nil {
				return err
			}
			if p.Spec.NodeName != node {
				return fmt.Errorf("%s on %q", pod, p.Spec.NodeName)
			}
			return nil
		}
	}
	if _, err := st.Create(ctx, newPod("p1", "a")); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, scheduled("p1", "node-a"))

	lead, follow := one, two
	if first == two.id {
		lead, follow = two, one
	}
	// The leader is cut off: the other takes over after the ttl.
	lead.kv.cut.Store(true)
	cutAt := time.Now()
	controllertest.Eventually(t, 10*time.Second, func() error {
		h, err := holder(ctx, b.Leader)
		if err != nil {
			return err
		}
		if h != follow.id {
			return fmt.Errorf("holder %s", h)
		}
		return nil
	})
	// The last renewal was at most ttl/3 before the cut.
	if d := time.Since(cutAt); d < ttl*2/3-50*time.Millisecond {
		t.Fatalf("took over %v after the cut, before the ttl", d)
	}
	if _, err := st.Create(ctx, newPod("p2", "a")); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, scheduled("p2", "node-a"))

	// The new leader stops cleanly: it releases the lease.
	follow.cancel()
	select {
	case err := <-follow.done:
		if err != nil {
			t.Fatalf("RunWithOptions: %v", err)
		}
		follow.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("RunWithOptions did not return")
	}
	if _, err := b.Leader.Get(ctx, messaging.LeaderKey(LeaderLease)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease after a clean stop: %v", err)
	}
}
