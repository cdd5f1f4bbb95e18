package nodes

import (
	"context"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
)

// TestLastHeartbeatTimeFollowsLease: the Ready condition's
// lastHeartbeatTime follows the leases, written at most every
// HeartbeatWriteInterval, keeping the transition time.
func TestLastHeartbeatTimeFollowsLease(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	nodes := cache{"node-a": createNode(t, env.Store, env.Store, "node-a")}
	c := New(env.Store, nodes, nil, Options{Grace: 40 * time.Second, Now: func() time.Time { return now }})
	beat := func(after time.Duration) {
		t.Helper()
		now = now.Add(after)
		c.ObserveLease("node-a", now)
		if err := c.Sync(ctx, "node-a"); err != nil {
			t.Fatal(err)
		}
		nodes["node-a"], _ = env.Store.Get(ctx, "nodes", "", "node-a")
	}
	beat(0)
	first, rv := ready(t, env.Store, "node-a")
	if !first.LastHeartbeatTime.Equal(now) {
		t.Fatalf("lastHeartbeatTime %v, want %v", first.LastHeartbeatTime, now)
	}
	// Heartbeats within the interval: no write.
	for range 2 {
		beat(10 * time.Second)
	}
	if cond, rv2 := ready(t, env.Store, "node-a"); rv2 != rv || !cond.LastHeartbeatTime.Equal(first.LastHeartbeatTime) {
		t.Fatalf("written within %v: rv %s -> %s, %+v", HeartbeatWriteInterval, rv, rv2, cond)
	}
	// The interval reached: the last heartbeat is written, nothing else.
	beat(10 * time.Second)
	cond, rv2 := ready(t, env.Store, "node-a")
	if rv2 == rv || !cond.LastHeartbeatTime.Equal(now) || !cond.LastTransitionTime.Equal(first.LastTransitionTime) || cond.Status != first.Status {
		t.Fatalf("after %v: rv %s -> %s, %+v (first %+v)", HeartbeatWriteInterval, rv, rv2, cond, first)
	}
}

// The heartbeat write interval grows with the fleet past 600 nodes, so an
// idle fleet costs at most HeartbeatWritesPerSecond writes a second.
func TestHeartbeatWriteIntervalScales(t *testing.T) {
	for _, tc := range []struct {
		nodes int64
		want  time.Duration
	}{{0, 30 * time.Second}, {1, 30 * time.Second}, {600, 30 * time.Second}, {1000, 50 * time.Second}, {10000, 500 * time.Second}} {
		if got := heartbeatWriteInterval(tc.nodes); got != tc.want {
			t.Errorf("%d nodes: %v, want %v", tc.nodes, got, tc.want)
		}
		if tc.nodes > 0 {
			if perSecond := float64(tc.nodes) / heartbeatWriteInterval(tc.nodes).Seconds(); perSecond > HeartbeatWritesPerSecond {
				t.Errorf("%d nodes: %.1f writes/s", tc.nodes, perSecond)
			}
		}
	}
}
