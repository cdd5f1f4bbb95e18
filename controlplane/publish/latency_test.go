package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkPlainSubscriberLatency measures the time from a publisher's
// publish to a plain subscriber's receipt, on an embedded server with file
// storage, with and without fsync on every write:
//
//   - direct: the path before the ingest tree, a core publish on the public
//     subject, which EDGE_EVENTS captured alongside;
//   - stream: the Publisher's path, a publish on the ingest subject that
//     reaches subscribers once the stream stored and republished it.
//
// It reports the median, 90th and 99th percentiles. Run it with
// -benchtime=1000x for the median over 1,000 messages:
//
//	go test -run '^$' -bench PlainSubscriberLatency -benchtime 1000x ./controlplane/publish/
func BenchmarkPlainSubscriberLatency(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, path := range []string{"direct", "stream"} {
			b.Run(fmt.Sprintf("%s/sync=%v", path, sync), func(b *testing.B) { benchLatency(b, path, sync) })
		}
	}
}

func benchLatency(b *testing.B, path string, syncAlways bool) {
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: b.TempDir(), Port: -1, SyncAlways: syncAlways})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubConn, err := messaging.Connect(ctx, ns.ClientURL(), "cp")
	if err != nil {
		b.Fatal(err)
	}
	defer pubConn.Close()
	subConn, err := messaging.Connect(ctx, ns.ClientURL(), "integration")
	if err != nil {
		b.Fatal(err)
	}
	defer subConn.Close()
	js, err := jetstream.New(pubConn)
	if err != nil {
		b.Fatal(err)
	}
	cfg := messaging.EventsStreamConfig(messaging.BucketOptions{})
	if path == "direct" {
		cfg.Subjects = []string{messaging.EventsFilter, messaging.StatusFilter}
		cfg.SubjectTransform, cfg.RePublish = nil, nil
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	ch := make(chan *nats.Msg, 16)
	sub, err := subConn.ChanSubscribe(messaging.StatusFilter, ch)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := subConn.Flush(); err != nil {
		b.Fatal(err)
	}

	p, err := New(pubConn, Options{})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { p.ackLoop(ctx) })

	pod := &manifests.Pod{}
	pod.Namespace, pod.Name, pod.UID = "apps", "web", "0b5e7c1e-2f4a-4c55-9d0e-6f0d5d1f7a11"
	pod.Spec.NodeName = "edge-1"
	pod.Status = manifests.PodStatus{Phase: "Running", PodIP: "10.244.1.5",
		Conditions: []manifests.PodCondition{{Type: "Ready", Status: manifests.ConditionTrue}},
		ContainerStatuses: []manifests.ContainerStatus{{Name: "app", Ready: true, Image: "web:1",
			State: manifests.ContainerState{Running: &manifests.ContainerStateRunning{}}}}}
	subject := messaging.PodStatusSubject(pod.Namespace, pod.Name)
	lat := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		i++
		msg := PodStatus{Schema: SchemaPodStatus, Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			ResourceVersion: fmt.Sprint(i), Time: time.Now().UTC(), PodSummary: podSummary(pod)}
		id := fmt.Sprintf("pod/%s/%d", pod.UID, i)
		start := time.Now()
		if path == "direct" {
			err = publishDirect(pubConn, subject, id, msg)
		} else {
			err = p.publish(ctx, subject, id, msg)
		}
		if err != nil {
			b.Fatal(err)
		}
		select {
		case m := <-ch:
			lat = append(lat, time.Since(start))
			if m.Header.Get(nats.MsgIdHdr) != id {
				b.Fatalf("got %s, want %s", m.Header.Get(nats.MsgIdHdr), id)
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("message %d not received", i)
		}
	}
	slices.Sort(lat)
	pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.5), "µs-p50")
	b.ReportMetric(pct(0.9), "µs-p90")
	b.ReportMetric(pct(0.99), "µs-p99")
}

// publishDirect is how messages went out before the ingest tree: a core
// publish on the public subject.
func publishDirect(nc *nats.Conn, subject, msgID string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, msgID)
	return nc.PublishMsg(m)
}
