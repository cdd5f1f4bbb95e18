package events_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/manifests"
)

func replicaSet(name, uid string) *manifests.ReplicaSet {
	rs := &manifests.ReplicaSet{}
	rs.Namespace, rs.Name, rs.UID = "default", name, uid
	return rs
}

// Similar events (same object, type and reason, different messages) are
// stored one by one up to MaxSimilar, then folded into one combined event
// counting the rest, its message the latest.
func TestRecorderCombinesSimilarEvents(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	rec := events.NewRecorder(env.Store, events.Options{Component: "replicaset-controller"})
	rs := replicaSet("web", "uid-web")
	const n = 25
	for i := range n {
		if err := rec.Eventf(ctx, rs, manifests.EventNormal, "SuccessfulCreate", "Created pod: web-%d", i); err != nil {
			t.Fatal(err)
		}
	}
	evs := listEvents(t, env.Store)
	if len(evs) != events.MaxSimilar {
		t.Fatalf("%d events, want %d (%d single, 1 combined)", len(evs), events.MaxSimilar, events.MaxSimilar-1)
	}
	var total int32
	combined := 0
	for _, ev := range evs {
		total += ev.Count
		if strings.HasPrefix(ev.Message, events.CombinedPrefix) {
			combined++
			if want := events.CombinedPrefix + fmt.Sprintf("Created pod: web-%d", n-1); ev.Message != want || ev.Count != n-events.MaxSimilar+1 {
				t.Errorf("combined event: count %d message %q, want %d %q", ev.Count, ev.Message, n-events.MaxSimilar+1, want)
			}
		} else if ev.Count != 1 {
			t.Errorf("single event %q: count %d", ev.Message, ev.Count)
		}
	}
	if combined != 1 || total != n {
		t.Fatalf("%d combined events, counts sum to %d; want 1 and %d", combined, total, n)
	}
	// Another object's events are its own.
	if err := rec.Eventf(ctx, replicaSet("api", "uid-api"), manifests.EventNormal, "SuccessfulCreate", "Created pod: api-1"); err != nil {
		t.Fatal(err)
	}
	if evs := listEvents(t, env.Store); len(evs) != events.MaxSimilar+1 {
		t.Fatalf("%d events after one about another object, want %d", len(evs), events.MaxSimilar+1)
	}
}

// Concurrent events about different objects are all stored, and
// concurrent repeats of one event all counted.
func TestRecorderConcurrent(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	rec := events.NewRecorder(env.Store, events.Options{Component: "default-scheduler"})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 50 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			pod := &manifests.Pod{}
			pod.Namespace, pod.Name, pod.UID = "default", fmt.Sprintf("p%d", i), fmt.Sprintf("uid-%d", i)
			errs <- rec.Eventf(ctx, pod, manifests.EventNormal, "Scheduled", "Successfully assigned default/p%d to n", i)
		}()
		go func() {
			defer wg.Done()
			errs <- rec.Eventf(ctx, replicaSet("web", "uid-web"), manifests.EventWarning, "FailedCreate", "Error creating: quota")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	scheduled, failed := 0, int32(0)
	for _, ev := range listEvents(t, env.Store) {
		switch ev.Reason {
		case "Scheduled":
			scheduled++
		case "FailedCreate":
			failed += ev.Count
		}
	}
	if scheduled != 50 || failed != 50 {
		t.Fatalf("%d Scheduled events, FailedCreate counted %d times; want 50 and 50", scheduled, failed)
	}
}

// An AsyncRecorder returns before the write, stores every event, folds
// repeats queued together into one count, and stops with its context.
func TestAsyncRecorder(t *testing.T) {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := events.NewRecorder(env.Store, events.Options{Component: "replicaset-controller"})
	a := rec.Async(ctx)
	const pods = 200
	for i := range pods {
		pod := &manifests.Pod{}
		pod.Namespace, pod.Name, pod.UID = "default", fmt.Sprintf("p%d", i), fmt.Sprintf("uid-%d", i)
		if err := a.Eventf(ctx, pod, manifests.EventNormal, "Scheduled", "Successfully assigned default/p%d to n", i); err != nil {
			t.Fatal(err)
		}
		if err := a.Eventf(ctx, replicaSet("web", "uid-web"), manifests.EventNormal, "SuccessfulCreate", "Created pod: p%d", i); err != nil {
			t.Fatal(err)
		}
	}
	controllertest.Eventually(t, 20*time.Second, func() error {
		if n := a.Len(); n > 0 {
			return fmt.Errorf("%d events waiting", n)
		}
		scheduled, created := 0, int32(0)
		rows := 0
		for _, ev := range listEvents(t, env.Store) {
			switch ev.Reason {
			case "Scheduled":
				scheduled++
			case "SuccessfulCreate":
				created += ev.Count
				rows++
			}
		}
		if scheduled != pods || created != pods || rows != events.MaxSimilar {
			return fmt.Errorf("%d Scheduled events, SuccessfulCreate counted %d times in %d events; want %d, %d in %d", scheduled, created, rows, pods, pods, events.MaxSimilar)
		}
		return nil
	})

	// Bad input is said at once.
	type notAKind struct {
		manifests.TypeMeta
		manifests.ObjectMeta
	}
	if err := a.Eventf(ctx, &notAKind{}, manifests.EventNormal, "X", "x"); err == nil {
		t.Fatal("event about an unregistered type: want an error")
	}
	// Stopped: events are refused once the queue is drained.
	cancel()
	controllertest.Eventually(t, 10*time.Second, func() error {
		if err := a.Eventf(context.Background(), replicaSet("web", "uid-web"), manifests.EventNormal, "Late", "late"); err == nil || !strings.Contains(err.Error(), "stopped") {
			return fmt.Errorf("after stop: %v", err)
		}
		return nil
	})
}
