package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
	"github.com/nats-io/nats.go/jetstream"
)

// pendingNamespace holds the pods of the pending-pods figure.
const pendingNamespace = "scale-pending"

// applyBatchesInFlight is how many batch applies the harness sends at
// once (each holds up to client.MaxApplyBatch objects).
const applyBatchesInFlight = 8

// pendingPods measures the scheduler inside the real control plane apart
// from the ReplicaSet's pace: n pods that fit no node (their nodeSelector
// names a label no node has) are applied in batches and left until every
// one is Pending with an Unschedulable condition; then nodes get the label
// (batch applies) and the figure is n over the time from the first label
// write to the last pod seen bound. With podsPerNode > 0 the label goes to
// as many nodes as hold podsPerNode pods each (20 nodes for 1,000 pods at
// 50), so that the trigger is a few writes and the figure the scheduler's
// and its bindings'; with 0 it goes to every node, and the pods are bound
// as fast as the control plane takes the nodes' label writes (1,000 of
// them alongside the 1,000 bindings).
func pendingPods(ctx context.Context, cl *client.Client, js jetstream.JetStream, nodes *nodeWatch, n, podsPerNode int, fail func() error, prof *phaseProfiler) error {
	label := fmt.Sprintf("scale-pending-%d", n)
	objects, err := js.KeyValue(ctx, messaging.BucketObjects)
	if err != nil {
		return err
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	kw, err := objects.Watch(wctx, messaging.ObjectFilter("pods", pendingNamespace), jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watch pending pods: %w", err)
	}
	defer kw.Stop()
	prefix := fmt.Sprintf("pending-%d-", n)
	w := newPendingWatch(messaging.ObjectKey("pods", pendingNamespace, prefix))
	go w.follow(kw.Updates())

	ns := &manifests.Namespace{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: manifests.ObjectMeta{Name: pendingNamespace}}
	if _, _, err := cl.Apply(ctx, ns); err != nil {
		return fmt.Errorf("apply namespace %s: %w", pendingNamespace, err)
	}
	raws := make([]json.RawMessage, n)
	for i := range raws {
		p := &manifests.Pod{
			TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: manifests.ObjectMeta{Name: fmt.Sprintf("%s%05d", prefix, i), Namespace: pendingNamespace,
				Labels: map[string]string{"app": label}},
			Spec: manifests.PodSpec{
				NodeSelector: map[string]string{label: "go"},
				Containers:   []manifests.Container{{Name: "main", Image: "fake://run"}},
			},
		}
		if raws[i], err = json.Marshal(p); err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := applyAll(ctx, cl, raws); err != nil {
		return fmt.Errorf("apply %d pending pods: %w", n, err)
	}
	applied := time.Since(t0)
	if err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		unsched, bound := w.counts()
		return unsched >= n || bound > 0, fmt.Sprintf("%d of %d pods Unschedulable, %d bound", unsched, n, bound)
	}, fail, nil); err != nil {
		return err
	}
	if _, bound := w.counts(); bound > 0 {
		return fmt.Errorf("%d pods bound before any node has label %s", bound, label)
	}
	fmt.Printf("    (%d pods applied in %.2f s, all Unschedulable after %.2f s)\n", n, applied.Seconds(), time.Since(t0).Seconds())

	// Label the nodes.
	all := nodes.objects()
	if podsPerNode > 0 {
		all = all[:min(len(all), (n+podsPerNode-1)/podsPerNode)]
	}
	raws = raws[:0]
	for _, node := range all {
		labels := maps.Clone(node.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[label] = "go"
		raw, err := json.Marshal(map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{"name": node.Name, "labels": labels},
			"spec":     node.Spec,
		})
		if err != nil {
			return err
		}
		raws = append(raws, raw)
	}
	seq1, err := lastSeq(ctx, js, "KV_"+messaging.BucketObjects)
	if err != nil {
		return err
	}
	wc, err := countWrites(ctx, js, seq1)
	if err != nil {
		return err
	}
	prof.start("pending")
	t1 := time.Now()
	if err := applyAll(ctx, cl, raws); err != nil {
		return fmt.Errorf("label %d nodes: %w", len(raws), err)
	}
	labelled := time.Since(t1)
	if err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		_, bound := w.counts()
		return bound >= n, fmt.Sprintf("%d of %d pending pods bound", bound, n)
	}, fail, nil); err != nil {
		return err
	}
	prof.stop()
	first, last := w.boundTimes()
	name := fmt.Sprintf("scale: pending pods scheduled+bound/s, %d pods", n)
	switch n {
	case 1000:
		name = figures.Bind1000
	case 10000:
		name = figures.Bind10000
	}
	figures.Record(name, float64(n)/last.Sub(t1).Seconds(), "pods/s", ">= 1000 pods/s")
	fmt.Printf("    (%d pending pods over %d nodes: label -> all bound %.2f s; %d nodes labelled in %.2f s; first bound after %.2f s; %s)\n",
		n, len(all), last.Sub(t1).Seconds(), len(all), labelled.Seconds(), first.Sub(t1).Seconds(), objectWrites(ctx, js, seq1, n, t1, wc))
	return nil
}

// applyAll applies raws in batches of client.MaxApplyBatch,
// applyBatchesInFlight batches at once, and fails on the first object
// that failed.
func applyAll(ctx context.Context, cl *client.Client, raws []json.RawMessage) error {
	sem := make(chan struct{}, applyBatchesInFlight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for lo := 0; lo < len(raws); lo += client.MaxApplyBatch {
		batch := raws[lo:min(lo+client.MaxApplyBatch, len(raws))]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			items, err := cl.ApplyBatch(ctx, batch, false)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for i, it := range items {
				if it.Error != nil {
					errs = append(errs, fmt.Errorf("object %d: %w", lo+i, it.Error))
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	return errors.Join(errs...)
}

// pendingWatch follows the pending pods whose keys start with prefix in
// the objects bucket (an ordered consumer, which loses nothing): which
// are Unschedulable, and when each was first seen bound.
type pendingWatch struct {
	prefix      string
	mu          sync.Mutex
	unsched     map[string]bool
	bound       map[string]time.Time
	first, last time.Time
}

func newPendingWatch(prefix string) *pendingWatch {
	return &pendingWatch{prefix: prefix, unsched: map[string]bool{}, bound: map[string]time.Time{}}
}

func (w *pendingWatch) follow(entries <-chan jetstream.KeyValueEntry) {
	for e := range entries {
		if e == nil || e.Operation() != jetstream.KeyValuePut || !strings.HasPrefix(e.Key(), w.prefix) {
			continue
		}
		now := time.Now()
		o, err := manifests.FromJSON(e.Value())
		if err != nil {
			continue
		}
		p, ok := o.(*manifests.Pod)
		if !ok {
			continue
		}
		unsched := false
		for _, c := range p.Status.Conditions {
			if c.Type == manifests.PodScheduled && c.Status == manifests.ConditionFalse && c.Reason == "Unschedulable" {
				unsched = true
			}
		}
		w.mu.Lock()
		if unsched {
			w.unsched[e.Key()] = true
		}
		if _, ok := w.bound[e.Key()]; !ok && p.Spec.NodeName != "" {
			w.bound[e.Key()] = now
			if w.first.IsZero() {
				w.first = now
			}
			w.last = now
		}
		w.mu.Unlock()
	}
}

func (w *pendingWatch) counts() (unschedulable, bound int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.unsched), len(w.bound)
}

// boundTimes are when the first and the last pod were first seen bound.
func (w *pendingWatch) boundTimes() (first, last time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first, w.last
}
