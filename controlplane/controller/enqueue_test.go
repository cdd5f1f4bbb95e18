package controller

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestAddObjectAndControllerOf(t *testing.T) {
	q := NewQueue(time.Millisecond, time.Second)
	yes := true
	pod := func(owner, kind string) *manifests.Pod {
		p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p-" + owner, Namespace: "ns"}}
		p.OwnerReferences = []manifests.OwnerReference{{Kind: kind, Name: owner, Controller: &yes}}
		return p
	}
	q.AddObject(nil, pod("a", "Job"))                                            // added
	q.AddObject(pod("b", "Job"), nil)                                            // deleted: the old object's key
	q.AddControllerOf("DaemonSet", pod("x", "DaemonSet"), pod("y", "DaemonSet")) // owner changed: both
	q.AddControllerOf("DaemonSet", nil, pod("z", "Job"))                         // another kind's: none
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for q.Len() > 0 {
		key, ok := q.Get(ctx)
		if !ok {
			t.Fatal("queue closed")
		}
		got = append(got, key)
		q.Done(key)
	}
	sort.Strings(got)
	want := []string{"ns/p-a", "ns/p-b", "ns/x", "ns/y"}
	if len(got) != len(want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("keys %v, want %v", got, want)
		}
	}
}
