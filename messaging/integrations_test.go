package messaging_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
)

func TestIngestSubject(t *testing.T) {
	for public, want := range map[string]string{
		messaging.PodStatusSubject("apps", "web.1"):      "_edge.ingest.status.v1.pod.apps.web_1",
		messaging.NodeStatusSubject("edge-7"):            "_edge.ingest.status.v1.node.edge-7",
		messaging.EventSubject("", "Node", "edge-7"):     "_edge.ingest.events.v1._.Node.edge-7",
		messaging.EventSubject("shop", "Pod", "a.b.c"):   "_edge.ingest.events.v1.shop.Pod.a_b_c",
		messaging.EventSubject("shop", "Deployment", ""): "_edge.ingest.events.v1.shop.Deployment._",
	} {
		if got := messaging.IngestSubject(public); got != want {
			t.Errorf("IngestSubject(%q) = %q, want %q", public, got, want)
		}
	}
}

// oldEventsStreamConfig is EDGE_EVENTS as versions before the ingest tree
// made it: it captured the public subjects.
func oldEventsStreamConfig() jetstream.StreamConfig {
	cfg := messaging.EventsStreamConfig(messaging.BucketOptions{})
	cfg.Subjects = []string{messaging.EventsFilter, messaging.StatusFilter}
	cfg.SubjectTransform, cfg.RePublish = nil, nil
	return cfg
}

func TestEventsStreamConfig(t *testing.T) {
	env := natstest.Start(t, "stream-config")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
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
	if cfg.MaxAge != 7*24*time.Hour || cfg.MaxBytes != 256<<20 || cfg.Storage != jetstream.FileStorage || cfg.Duplicates < 2*time.Minute {
		t.Fatalf("stream limits: %+v", cfg)
	}
	if !slices.Equal(cfg.Subjects, []string{"_edge.ingest.events.v1.>", "_edge.ingest.status.v1.>"}) ||
		cfg.SubjectTransform == nil || cfg.SubjectTransform.Source != "_edge.ingest.>" || cfg.SubjectTransform.Destination != "edge.>" ||
		cfg.RePublish == nil || cfg.RePublish.Source != "edge.>" || cfg.RePublish.Destination != "edge.>" || cfg.RePublish.HeadersOnly {
		t.Fatalf("stream subjects: %v, transform %+v, republish %+v", cfg.Subjects, cfg.SubjectTransform, cfg.RePublish)
	}
}

// TestEventsStreamUpdatesOldConfig checks that a stream made by an older
// version is brought to the ingest tree in place, keeping its messages and
// consumers, and that from then on the stream stores, deduplicates and
// republishes under the public subjects.
func TestEventsStreamUpdatesOldConfig(t *testing.T) {
	env := natstest.Start(t, "stream-update")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := env.JS.CreateStream(ctx, oldEventsStreamConfig()); err != nil {
		t.Fatal(err)
	}
	pod := messaging.PodStatusSubject("apps", "web")
	publish := func(subject, id string) *jetstream.PubAck {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = []byte(`{"id":"` + id + `"}`)
		m.Header.Set(nats.MsgIdHdr, id)
		ack, err := env.JS.PublishMsg(ctx, m)
		if err != nil {
			t.Fatalf("publish %s on %s: %v", id, subject, err)
		}
		return ack
	}
	publish(pod, "pod/u/1") // as the old version did
	if _, err := env.JS.CreateOrUpdateConsumer(ctx, messaging.StreamEvents, jetstream.ConsumerConfig{
		Durable: "pods", FilterSubject: "edge.status.v1.pod.>", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}

	s, err := messaging.EnsureEventsStream(ctx, env.JS, messaging.BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.RePublish == nil || info.Config.SubjectTransform == nil || info.State.Msgs != 1 || info.State.Consumers != 1 {
		t.Fatalf("after the update: config %+v, state %+v", info.Config, info.State)
	}

	// A plain subscriber of the public tree.
	msgs := make(chan *nats.Msg, 16)
	sub, err := env.Conn.ChanSubscribe(messaging.IntegrationsFilter, msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := env.Conn.Flush(); err != nil {
		t.Fatal(err)
	}

	// Two copies of a change, as two control planes send them.
	for i := range 2 {
		ack := publish(messaging.IngestSubject(pod), "pod/u/2")
		if ack.Stream != messaging.StreamEvents || ack.Duplicate != (i == 1) {
			t.Fatalf("copy %d: ack %+v", i+1, ack)
		}
	}
	// The public subjects are no longer captured (that would loop).
	// (The plain subscriber is a responder, so no ack means a timeout.)
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if _, err := env.JS.Publish(short, pod, []byte("{}")); err == nil {
		t.Fatalf("a publish on the public subject %s was stored", pod)
	}
	publish(messaging.IngestSubject(messaging.NodeStatusSubject("sentinel")), "sentinel")

	var got []*nats.Msg
	for done := false; !done; {
		select {
		case m := <-msgs:
			if m.Subject == messaging.NodeStatusSubject("sentinel") {
				done = true
				continue
			}
			got = append(got, m)
		case <-ctx.Done():
			t.Fatalf("no sentinel; got %d messages", len(got))
		}
	}
	// One copy of the change, and the direct publish on pod above (no
	// stream, delivered to plain subscribers as any message).
	var republished []*nats.Msg
	for _, m := range got {
		if m.Header.Get("Nats-Stream") != "" {
			republished = append(republished, m)
		}
	}
	if len(republished) != 1 || len(got) != 2 {
		t.Fatalf("plain subscriber got %d messages, %d republished, want 2 and 1", len(got), len(republished))
	}
	m := republished[0]
	if m.Subject != pod || m.Header.Get(nats.MsgIdHdr) != "pod/u/2" || m.Header.Get("Nats-Stream") != messaging.StreamEvents ||
		m.Header.Get("Nats-Subject") != pod || m.Header.Get("Nats-Sequence") != "2" || string(m.Data) != `{"id":"pod/u/2"}` {
		t.Fatalf("republished message on %s, headers %v, data %s", m.Subject, m.Header, m.Data)
	}

	// The consumer made before the update reads the old message and the
	// new one once, both under the public subject.
	cons, err := env.JS.Consumer(ctx, messaging.StreamEvents, "pods")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for m := range batch.Messages() {
		if m.Subject() != pod {
			t.Errorf("consumer got a message on %s, want %s", m.Subject(), pod)
		}
		ids = append(ids, m.Headers().Get(nats.MsgIdHdr))
		if h := m.Headers().Get("Nats-Stream"); h != "" {
			t.Errorf("a consumer's message carries the republish header Nats-Stream: %q", h)
		}
		if md, err := m.Metadata(); err != nil || md.Stream != messaging.StreamEvents {
			t.Errorf("consumer message metadata %+v: %v", md, err)
		}
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(ids, []string{"pod/u/1", "pod/u/2"}) {
		t.Fatalf("consumer read %v", ids)
	}
}
