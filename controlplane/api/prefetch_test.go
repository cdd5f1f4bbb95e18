package api

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

func TestPrefetchedOnceAndOnlyForItsObject(t *testing.T) {
	p := &manifests.Pod{}
	p.Namespace, p.Name = "default", "web"
	if _, ok := prefetched(context.Background(), "pods", "default", "web"); ok {
		t.Fatal("prefetched without room in the context")
	}
	ctx := withPrefetch(context.Background())
	remember(ctx, p)
	for _, c := range []struct{ resource, ns, name string }{
		{"nodes", "default", "web"}, {"pods", "other", "web"}, {"pods", "default", "db"},
	} {
		if _, ok := prefetched(ctx, c.resource, c.ns, c.name); ok {
			t.Fatalf("prefetched %v for the pod default/web", c)
		}
		remember(ctx, p)
	}
	got, ok := prefetched(ctx, "pods", "default", "web")
	if !ok || got != p {
		t.Fatalf("prefetched = %v, %v", got, ok)
	}
	if _, ok := prefetched(ctx, "pods", "default", "web"); ok {
		t.Fatal("prefetched twice")
	}
}

// A node's status update starts from the pod its authorization read; a
// pod changed in between is a conflict the update retries, so every
// status lands and nothing else is lost.
func TestNodeStatusUpdateWithConcurrentWriters(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	in := pod("web", "hello:1")
	in.Spec.NodeName = "edge-1"
	if _, _, err := e.c.Apply(ctx, in); err != nil {
		t.Fatal(err)
	}
	node := client.New(e.nc, client.AsNode("edge-1"))
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		for i := range 20 {
			st := &manifests.Pod{}
			st.Name, st.Namespace = "web", "default"
			st.Status.Phase = "Running"
			st.Status.Message = fmt.Sprint(i)
			// Conflicts are retried by the server (a few times), then,
			// as by the agent's status queue, by the caller.
			for {
				_, err := node.UpdateStatus(ctx, st)
				if client.IsConflict(err) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("status %d: %w", i, err)
					return
				}
				break
			}
		}
	})
	wg.Go(func() {
		for i := range 20 {
			up := pod("web", "hello:1")
			up.Spec.NodeName = "edge-1"
			up.Labels = map[string]string{"n": fmt.Sprint(i)}
			// An apply retries a lost race once; the status writer may
			// win twice in a row.
			for {
				_, _, err := e.c.Apply(ctx, up)
				if client.IsConflict(err) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("apply %d: %w", i, err)
					return
				}
				break
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := e.c.Get(ctx, "pods", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	p := got.(*manifests.Pod)
	if p.Status.Message != "19" || p.Labels["n"] != "19" || p.Spec.NodeName != "edge-1" {
		t.Fatalf("after both writers: labels %v, status %+v", p.Labels, p.Status)
	}

	// A stale resourceVersion is still a conflict; another node's pod is
	// still forbidden.
	st := &manifests.Pod{}
	st.Name, st.Namespace, st.ResourceVersion = "web", "default", "1"
	_, err = node.UpdateStatus(ctx, st)
	wantCode(t, err, client.CodeConflict, "")
	st.ResourceVersion = ""
	_, err = client.New(e.nc, client.AsNode("edge-2")).UpdateStatus(ctx, st)
	wantCode(t, err, client.CodeForbidden, "")
}
