package replicaset_test

import (
	"context"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/replicaset"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/natstest"
)

// syncedStore starts a NATS server whose JetStream fsyncs every write
// (the control plane's default) with the buckets on disk, and returns a
// store over them.
func syncedStore(b *testing.B) *store.Store {
	return store.New(natstest.StartSynced(b, "replicaset-bench").Buckets.Objects)
}

// BenchmarkCreate1000 measures the ReplicaSet controller creating 1,000
// pods (and recording their SuccessfulCreate events) against a real store
// on disk, JetStream syncing every write, as in the control plane: it
// reports pods created per second, from the ReplicaSet's creation until
// the pod cache holds every pod.
func BenchmarkCreate1000(b *testing.B) {
	const n = 1000
	controllertest.QuietLogs(b)
	for range b.N {
		b.StopTimer()
		st := syncedStore(b)
		ctx, cancel := context.WithCancel(context.Background())
		rsets := controller.NewInformer(st, "replicasets")
		pods := controller.NewInformer(st, "pods")
		rec := events.NewRecorder(st, events.Options{Component: replicaset.Name})
		c := replicaset.New(st, rsets, pods, rec)
		rsets.AddHandler(c.RSChanged)
		pods.AddHandler(c.PodChanged)
		for _, inf := range []*controller.Informer{rsets, pods} {
			go func() { _ = inf.Run(ctx) }()
			if err := inf.WaitForSync(ctx); err != nil {
				b.Fatal(err)
			}
		}
		go c.Run(ctx, 4)
		replicas := int32(n)
		labels := map[string]string{"app": "web"}
		rs := &manifests.ReplicaSet{
			TypeMeta:   manifests.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
			ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default", UID: "rs-web"},
			Spec: manifests.ReplicaSetSpec{
				Replicas: &replicas,
				Selector: &manifests.LabelSelector{MatchLabels: labels},
				Template: manifests.PodTemplateSpec{
					ObjectMeta: manifests.ObjectMeta{Labels: labels},
					Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "app", Image: "fake://run"}}},
				},
			},
		}
		manifests.Default(rs)
		b.StartTimer()
		start := time.Now()
		if _, err := st.Create(ctx, rs); err != nil {
			b.Fatal(err)
		}
		deadline := start.Add(5 * time.Minute)
		tick := time.NewTicker(5 * time.Millisecond)
		for len(pods.List(manifests.Selector{})) < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d pods after %v", len(pods.List(manifests.Selector{})), n, time.Since(start))
			}
			<-tick.C
		}
		tick.Stop()
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "pods/s")
		cancel()
		b.StartTimer()
	}
}
