package api

import (
	"fmt"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

func TestUpdateStatus(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	_, obj, err := e.c.Apply(ctx, pod("web", "hello:1"))
	if err != nil {
		t.Fatal(err)
	}
	// Only name, namespace and status, as an agent sends it: read-modify-write.
	st := &manifests.Pod{}
	st.Name, st.Namespace = "web", "default"
	st.Spec.Containers = []manifests.Container{{Name: "ignored", Image: "ignored:1"}}
	st.Status.Phase = "Running"
	got, err := e.c.UpdateStatus(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	p := got.(*manifests.Pod)
	if p.Status.Phase != "Running" || p.Spec.Containers[0].Image != "hello:1" || p.Generation != obj.GetObjectMeta().Generation {
		t.Fatalf("after status: %+v %+v gen %d", p.Spec, p.Status, p.Generation)
	}
	// With a stale resourceVersion it is a conflict.
	st.ResourceVersion = obj.GetObjectMeta().ResourceVersion
	st.Status.Phase = "Failed"
	_, err = e.c.UpdateStatus(ctx, st)
	wantCode(t, err, client.CodeConflict, "")
	// With the current one it succeeds.
	st.ResourceVersion = p.ResourceVersion
	got, err = e.c.UpdateStatus(ctx, st)
	if err != nil || got.(*manifests.Pod).Status.Phase != "Failed" {
		t.Fatalf("CAS status: %v %v", got, err)
	}
	st.Name = "missing"
	st.ResourceVersion = ""
	_, err = e.c.UpdateStatus(ctx, st)
	wantCode(t, err, client.CodeNotFound, `pods "missing" not found`)
}

func TestUpdateStatusConcurrentWritersAllLand(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	n := &manifests.Node{}
	n.Name = "node-a"
	if _, _, err := e.c.Apply(ctx, n); err != nil {
		t.Fatal(err)
	}
	// Writers without resourceVersion never see a conflict.
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &manifests.Node{}
			s.Name = "node-a"
			s.Status.Addresses = []manifests.NodeAddress{{Type: "Hostname", Address: fmt.Sprint("h", i)}}
			_, err := e.c.UpdateStatus(ctx, s)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.c.Get(ctx, "nodes", "", "node-a")
	if err != nil || len(got.(*manifests.Node).Status.Addresses) != 1 {
		t.Fatalf("node status: %+v %v", got, err)
	}
}
