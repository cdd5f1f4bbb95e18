package edgeagent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startNotifyAgent runs an agent with a fake runtime reaching NATS at url,
// logging at info into logs; tune changes its config.
func startNotifyAgent(t *testing.T, url string, logs io.Writer, tune func(*Config)) (*fake.Runtime, *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	frt := fake.New("fake")
	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		NodeName: "node-1", DataDir: t.TempDir(), Address: "10.1.2.3",
		HeartbeatInterval: 200 * time.Millisecond,
		Runtimes:          map[string]runtime.Runtime{"fake": frt},
		PollInterval:      20 * time.Millisecond, BackoffBase: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if tune != nil {
		tune(&cfg)
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nc, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
		frt.Close(context.Background())
	})
	return frt, nc
}

// assignmentsStream returns the assignments bucket's stream, seen from a
// connection of its own to url.
func assignmentsStream(t *testing.T, url string) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctxT(t), messaging.KVStream(messaging.BucketAssignments))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noConsumers waits until the stream has no consumer left.
func noConsumers(t *testing.T, s jetstream.Stream) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		info, err := s.Info(ctxT(t))
		if err != nil {
			return err
		}
		if n := info.State.Consumers; n != 0 {
			return fmt.Errorf("%d consumers on %s", n, info.Config.Name)
		}
		return nil
	})
}

// resyncs counts the resyncs logged so far (full and delta).
func resyncs(logs *lockedBuffer) int { return strings.Count(logs.String(), "msg=\"resync: ") }

// A change made while the agent is connected reaches it by notification:
// after its first resync no consumer is left on the assignments stream,
// and none is made for the change. After a cut, the resync's consumer is
// gone again too.
func TestAssignmentsByNotification(t *testing.T) {
	cp := startControlPlane(t)
	proxy := newLinkProxy(t, cp.ns.Addr().String())
	stream := assignmentsStream(t, cp.url)
	logs := &lockedBuffer{}
	frt, nc := startNotifyAgent(t, proxy.url(), logs, nil)

	cp.assign(t, handlerPod("first", "fake", "fake://run"))
	waitRunning(t, cp, "first")
	eventually(t, 10*time.Second, func() error {
		if resyncs(logs) == 0 {
			return fmt.Errorf("no resync logged")
		}
		return nil
	})
	noConsumers(t, stream)
	before := resyncs(logs)

	cp.assign(t, handlerPod("second", "fake", "fake://run"))
	waitRunning(t, cp, "second")
	if n := resyncs(logs); n != before {
		t.Fatalf("%d resyncs before the change, %d after: want it delivered by notification\n%s", before, n, logs)
	}
	noConsumers(t, stream)
	// A delete arrives the same way.
	if err := cp.buckets.Assignments.Delete(ctxT(t), messaging.AssignmentKey("node-1", "default", "first")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if id := runningContainers(t, frt)["first"]; id != "" {
			return fmt.Errorf("pod first still runs container %s", id)
		}
		return nil
	})
	if n := resyncs(logs); n != before {
		t.Fatalf("the delete took a resync")
	}

	// A change while cut reaches the agent by the resync of its
	// reconnection, whose consumer is then deleted.
	proxy.cut()
	eventually(t, 10*time.Second, func() error {
		if nc.IsConnected() {
			return fmt.Errorf("agent still connected")
		}
		return nil
	})
	cp.assign(t, handlerPod("third", "fake", "fake://run"))
	proxy.heal()
	waitRunning(t, cp, "third")
	if n := resyncs(logs); n <= before {
		t.Fatalf("no resync after the reconnection")
	}
	noConsumers(t, stream)
	running := runningContainers(t, frt)
	if running["second"] == "" || running["third"] == "" || running["first"] != "" {
		t.Fatalf("running %v, want second and third", running)
	}
}

// A change whose notification never comes (the stream's republish rule
// lifted for it) is found by the periodic keys-only check, with no
// reconnection.
func TestAssignmentsCheckFindsLostNotification(t *testing.T) {
	cp := startControlPlane(t)
	stream := assignmentsStream(t, cp.url)
	logs := &lockedBuffer{}
	frt, _ := startNotifyAgent(t, cp.url, logs, func(c *Config) { c.AssignmentsCheckInterval = 500 * time.Millisecond })
	cp.assign(t, handlerPod("first", "fake", "fake://run"))
	waitRunning(t, cp, "first")

	ctx := ctxT(t)
	setRePublish := func(rp *jetstream.RePublish) {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		cfg.RePublish = rp
		nc, err := nats.Connect(cp.url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatalf("set republish %v: %v", rp, err)
		}
	}
	setRePublish(nil)
	cp.assign(t, handlerPod("unnotified", "fake", "fake://run"))
	if err := cp.buckets.Assignments.Delete(ctx, messaging.AssignmentKey("node-1", "default", "first")); err != nil {
		t.Fatal(err)
	}
	setRePublish(messaging.AssignmentsRePublish())
	waitRunning(t, cp, "unnotified")
	eventually(t, 10*time.Second, func() error {
		running := runningContainers(t, frt)
		if running["first"] != "" || running["unnotified"] == "" {
			return fmt.Errorf("running %v, want only unnotified", running)
		}
		return nil
	})
	if !strings.Contains(logs.String(), "assignments check: ") {
		t.Fatalf("no assignments check logged:\n%s", logs)
	}
	noConsumers(t, stream)
}

// userPlane is a control plane on a server with plain users: admin may do
// anything, node everything but subscribe to assignment notifications, as
// a node's credentials issued before them.
func userPlane(t *testing.T) (cp *controlPlane, nodeURL string) {
	t.Helper()
	dir := t.TempDir()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
		Users: []*natsserver.User{
			{Username: "admin", Password: "a"},
			{Username: "node", Password: "n", Permissions: &natsserver.Permissions{
				Subscribe: &natsserver.SubjectPermission{Allow: []string{">"}, Deny: []string{messaging.AssignmentNotifySubject(">")}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	port := ns.Addr().String()
	return serveAPI(t, ns, dir, "nats://admin:a@"+port), "nats://node:n@" + port
}

// An agent whose credentials refuse the notification subject falls back
// to a KV watch and still follows its assignments.
func TestAssignmentsFallBackToWatchWhenNotificationsRefused(t *testing.T) {
	cp, nodeURL := userPlane(t)
	logs := &lockedBuffer{}
	frt, _ := startNotifyAgent(t, nodeURL, logs, nil)
	cp.assign(t, handlerPod("first", "fake", "fake://run"))
	waitRunning(t, cp, "first")
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "following assignments with a KV watch") {
			return fmt.Errorf("no fallback logged")
		}
		return nil
	})
	// Live changes now come through the watch.
	cp.assign(t, handlerPod("second", "fake", "fake://run"))
	waitRunning(t, cp, "second")
	if err := cp.buckets.Assignments.Delete(ctxT(t), messaging.AssignmentKey("node-1", "default", "first")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		running := runningContainers(t, frt)
		if running["first"] != "" || running["second"] == "" {
			return fmt.Errorf("running %v, want only second", running)
		}
		return nil
	})
}

// Notifications the agent cannot take fast enough are dropped by its
// client (a slow consumer): that starts a resync, and the agent keeps
// following its assignments.
func TestAssignmentsResyncAfterDroppedNotifications(t *testing.T) {
	cp := startControlPlane(t)
	stream := assignmentsStream(t, cp.url)
	logs := &lockedBuffer{}
	frt, _ := startNotifyAgent(t, cp.url, logs, nil)
	cp.assign(t, handlerPod("first", "fake", "fake://run"))
	waitRunning(t, cp, "first")
	before := resyncs(logs)

	// A flood of notifications the agent already has (revision 1).
	nc, err := nats.Connect(cp.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	flood := nats.NewMsg(messaging.AssignmentNotifySubject(messaging.AssignmentKey("node-1", "default", "first")))
	flood.Header.Set(messaging.HeaderSequence, "1")
	eventually(t, 20*time.Second, func() error {
		for range 20000 {
			if err := nc.PublishMsg(flood); err != nil {
				return err
			}
		}
		if err := nc.Flush(); err != nil {
			return err
		}
		if !strings.Contains(logs.String(), "assignment notifications dropped: resync") {
			return fmt.Errorf("no notification dropped yet")
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		if n := resyncs(logs); n <= before {
			return fmt.Errorf("no resync after the drop")
		}
		return nil
	})
	noConsumers(t, stream)
	cp.assign(t, handlerPod("second", "fake", "fake://run"))
	waitRunning(t, cp, "second")
	if running := runningContainers(t, frt); running["first"] == "" || running["second"] == "" {
		t.Fatalf("running %v, want first and second", running)
	}
}
