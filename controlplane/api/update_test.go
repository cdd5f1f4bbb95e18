package api

import (
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

func TestUpdate(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	_, obj, err := e.c.Apply(ctx, pod("web", "hello:1"))
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*manifests.Pod)
	uid, rv := p.UID, p.ResourceVersion
	p.Spec.Containers[0].Image = "hello:2"
	p.Status.Phase = "Running" // ignored: update keeps the stored status
	p.UID = ""                 // server-set metadata is kept
	updated, err := e.c.Update(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	up := updated.(*manifests.Pod)
	if up.Spec.Containers[0].Image != "hello:2" || up.Status.Phase != "Pending" || up.UID != uid {
		t.Fatalf("updated pod %+v", up)
	}
	if up.ResourceVersion == rv {
		t.Fatal("resourceVersion not changed")
	}
	// The old resourceVersion is stale now.
	_, err = e.c.Update(ctx, p)
	wantCode(t, err, client.CodeConflict, `Operation cannot be fulfilled on pods "web": the object has been modified; please apply your changes to the latest version and try again`)
	// Writing the same object again is a no-op.
	same, err := e.c.Update(ctx, up)
	if err != nil || same.GetObjectMeta().ResourceVersion != up.ResourceVersion {
		t.Fatalf("no-op update: %v %v", same, err)
	}
	// resourceVersion is required.
	up.ResourceVersion = ""
	_, err = e.c.Update(ctx, up)
	wantCode(t, err, client.CodeInvalid, `Pod "web" is invalid: metadata.resourceVersion: must be specified for an update`)
	// Immutable fields are checked.
	up.ResourceVersion = same.GetObjectMeta().ResourceVersion
	up.Spec.Containers[0].Name = "renamed"
	_, err = e.c.Update(ctx, up)
	wantCode(t, err, client.CodeInvalid, "")
	// Missing objects.
	gone := configMap("default", "gone", "1")
	gone.ResourceVersion = "1"
	_, err = e.c.Update(ctx, gone)
	wantCode(t, err, client.CodeNotFound, `configmaps "gone" not found`)
}

// A write to an object being deleted (finalizers pending) keeps its
// deletionTimestamp: a client cannot cancel a Foreground or Orphan delete.
func TestUpdateKeepsDeletionTimestamp(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	cm := configMap("default", "held", "1")
	cm.Finalizers = []string{"example.com/hold"}
	if _, _, err := e.c.Apply(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Delete(ctx, "configmaps", "default", "held"); err != nil {
		t.Fatal(err)
	}
	obj, err := e.c.Get(ctx, "configmaps", "default", "held")
	if err != nil {
		t.Fatalf("object with a finalizer should stay until it is removed: %v", err)
	}
	marked := obj.(*manifests.ConfigMap)
	if marked.DeletionTimestamp == nil {
		t.Fatal("delete did not set deletionTimestamp")
	}
	marked.DeletionTimestamp = nil
	marked.Data["k"] = "2"
	up, err := e.c.Update(ctx, marked)
	if err != nil {
		t.Fatal(err)
	}
	if up.GetObjectMeta().DeletionTimestamp == nil {
		t.Fatal("update cleared deletionTimestamp")
	}
}
