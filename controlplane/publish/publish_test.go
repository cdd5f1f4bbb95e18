package publish_test

import (
	"context"
	"encoding/json"
	"strings"
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

func TestPublish(t *testing.T) {
	env := natstest.Start(t, "publish-test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := store.New(env.Buckets.Objects)

	// Present before the publisher starts: baseline, never published.
	old := &manifests.Pod{}
	old.Namespace, old.Name = "apps", "old"
	old.Status.Phase = "Running"
	if _, err := st.Create(ctx, old); err != nil {
		t.Fatal(err)
	}

	// A plain subscriber, as `nats sub 'edge.>'` would be.
	msgs := make(chan *nats.Msg, 64)
	sub, err := env.Conn.ChanSubscribe("edge.*.v1.>", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	synced := make(chan struct{}, 1)
	stop, err := publish.Start(ctx, st, env.Conn, publish.Options{OnSynced: func() { synced <- struct{}{} }}, messaging.BucketOptions{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case <-synced:
	case <-ctx.Done():
		t.Fatal("publisher never synced")
	}

	next := func(want string) *nats.Msg {
		t.Helper()
		select {
		case m := <-msgs:
			if m.Subject != want {
				t.Fatalf("got a message on %s (%s), want one on %s", m.Subject, m.Data, want)
			}
			return m
		case <-time.After(10 * time.Second):
			t.Fatalf("no message on %s", want)
			return nil
		}
	}

	// A new pod, then its status change.
	pod := &manifests.Pod{}
	pod.Namespace, pod.Name = "apps", "web.1"
	pod.Spec.NodeName = "edge-1"
	created, err := st.Create(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	podSubject := "edge.status.v1.pod.apps.web_1"
	var ps publish.PodStatus
	if err := json.Unmarshal(next(podSubject).Data, &ps); err != nil {
		t.Fatal(err)
	}
	if ps.Schema != publish.SchemaPodStatus || ps.Phase != "Pending" || ps.Name != "web.1" || ps.Node != "edge-1" {
		t.Fatalf("first pod status: %+v", ps)
	}
	// A label change does not change the summary: nothing published.
	p := created.(*manifests.Pod)
	p.Labels = map[string]string{"tier": "web"}
	updated, err := st.Update(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	p = updated.(*manifests.Pod)
	p.Status.Phase = "Running"
	p.Status.PodIP = "10.244.1.5"
	p.Status.Conditions = []manifests.PodCondition{{Type: "Ready", Status: manifests.ConditionTrue}}
	p.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "app", Ready: true, Image: "web:1",
		State: manifests.ContainerState{Running: &manifests.ContainerStateRunning{}}}}
	if _, err := st.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	ps = publish.PodStatus{}
	if err := json.Unmarshal(next(podSubject).Data, &ps); err != nil {
		t.Fatal(err)
	}
	if ps.Phase != "Running" || ps.PodIP != "10.244.1.5" || len(ps.Containers) != 1 || ps.Containers[0].State != "running" ||
		!ps.Containers[0].Ready || len(ps.Conditions) != 1 {
		t.Fatalf("running pod status: %+v", ps)
	}

	// An event about the pod.
	rec := events.NewRecorder(st, events.Options{Component: "test"})
	if err := rec.Eventf(ctx, p, manifests.EventWarning, "BackOff", "restarting %s", "app"); err != nil {
		t.Fatal(err)
	}
	var ev publish.Event
	if err := json.Unmarshal(next("edge.events.v1.apps.Pod.web_1").Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Schema != publish.SchemaEvent || ev.Reason != "BackOff" || ev.Message != "restarting app" || ev.Count != 1 ||
		ev.InvolvedObject.Name != "web.1" || ev.Type != manifests.EventWarning {
		t.Fatalf("event: %+v", ev)
	}

	// A node: Ready, then Unreachable.
	node := &manifests.Node{}
	node.Name = "edge-1"
	node.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: manifests.ConditionTrue}}
	cn, err := st.Create(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	var ns publish.NodeStatus
	if err := json.Unmarshal(next("edge.status.v1.node.edge-1").Data, &ns); err != nil {
		t.Fatal(err)
	}
	if ns.State != publish.NodeReady {
		t.Fatalf("node status: %+v", ns)
	}
	node = cn.(*manifests.Node)
	node.Status.Conditions[0].Status = manifests.ConditionUnknown
	node.Spec.Taints = []manifests.Taint{{Key: nodes.TaintUnreachable, Effect: "NoExecute"}}
	if _, err := st.Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(next("edge.status.v1.node.edge-1").Data, &ns); err != nil {
		t.Fatal(err)
	}
	if ns.State != publish.NodeUnreachable {
		t.Fatalf("node status: %+v", ns)
	}
	select {
	case m := <-msgs:
		t.Fatalf("unexpected message on %s: %s", m.Subject, m.Data)
	default:
	}

	// A consumer created after the fact reads everything from the stream.
	cons, err := env.JS.CreateOrUpdateConsumer(ctx, messaging.StreamEvents, jetstream.ConsumerConfig{
		Durable: "late-reader", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for m := range batch.Messages() {
		subjects = append(subjects, m.Subject())
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{podSubject, podSubject, "edge.events.v1.apps.Pod.web_1", "edge.status.v1.node.edge-1", "edge.status.v1.node.edge-1"}
	if strings.Join(subjects, " ") != strings.Join(want, " ") {
		t.Fatalf("stream holds %v, want %v", subjects, want)
	}
}

func TestStreamConfig(t *testing.T) {
	env := natstest.Start(t, "stream-test")
	ctx := context.Background()
	for range 2 { // idempotent
		if _, err := messaging.EnsureEventsStream(ctx, env.JS, messaging.BucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := env.JS.Stream(ctx, messaging.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxAge != 7*24*time.Hour || cfg.MaxBytes != 256<<20 || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("stream config: %+v", cfg)
	}
}
