package state

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func testPod(name, uid string) *manifests.Pod {
	return &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default", UID: uid, ResourceVersion: "7"},
		Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "c", Image: "hello:v1"}}},
	}
}

func TestRoundTripAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := &Pod{
		Pod:       testPod("a", "uid-a"),
		Revision:  42,
		SandboxID: "sb-1",
		Containers: map[string]Container{"c": {ID: "ct-1", RestartCount: 3, Image: "hello:v1", Digest: "abc",
			LastState: &manifests.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}},
		Refs:      map[string]json.RawMessage{RefKey("configmaps", "cfg"): json.RawMessage(`{"data":{"k":"v"}}`)},
		Status:    &manifests.PodStatus{Phase: manifests.PodRunning},
		StartTime: start,
	}
	b := &Pod{Pod: testPod("b", "uid-b"), Revision: 43}
	if err := db.Batch([]*Pod{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMeta("rev", []byte("43")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pods, err := db.Pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 2 {
		t.Fatalf("got %d pods, want 2", len(pods))
	}
	if !reflect.DeepEqual(pods[0], a) {
		t.Fatalf("pod a changed in the round trip:\n got %+v\nwant %+v", pods[0], a)
	}
	if v, _ := db.Meta("rev"); string(v) != "43" {
		t.Fatalf("meta rev = %q", v)
	}

	// One batch both replaces and removes.
	a.Containers["c"] = Container{ID: "ct-2", RestartCount: 4}
	if err := db.Batch([]*Pod{a}, []string{b.Key()}); err != nil {
		t.Fatal(err)
	}
	pods, _ = db.Pods()
	if len(pods) != 1 || pods[0].Containers["c"].RestartCount != 4 {
		t.Fatalf("after batch: %+v", pods)
	}
	if err := db.DeletePod(a.Key()); err != nil {
		t.Fatal(err)
	}
	if pods, _ = db.Pods(); len(pods) != 0 {
		t.Fatalf("after delete: %d pods", len(pods))
	}
}
