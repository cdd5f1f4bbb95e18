package pods

import (
	"context"
	"errors"
	"testing"

	"github.com/edgeorch/edgeorch/runtime"
)

type fakeContainer struct{ stops int }

func (c *fakeContainer) Stop(ctx context.Context) error { c.stops++; return nil }

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	r := New[*fakeContainer]()
	labels := map[string]string{"a": "1"}
	sb, err := r.AddSandbox(runtime.PodSandboxConfig{Name: "p", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	labels["a"] = "changed"
	if got, _ := r.Sandbox(sb); got.Config.Labels["a"] != "1" || !got.Ready {
		t.Fatalf("sandbox: %+v", got)
	}
	c := &fakeContainer{}
	if err := r.AddContainer(sb, "c1", c, nil); err != nil {
		t.Fatal(err)
	}
	full := errors.New("full")
	if err := r.AddContainer(sb, "c2", &fakeContainer{}, func(n int) error { return full }); !errors.Is(err, full) {
		t.Fatalf("check refused nothing: %v", err)
	}
	if err := r.AddContainer("nope", "c3", &fakeContainer{}, nil); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("container of an unknown sandbox: %v", err)
	}
	if got, err := r.Container("c1"); err != nil || got != c {
		t.Fatalf("Container: %v %v", got, err)
	}
	if err := r.StopSandbox(ctx, sb); err != nil || c.stops != 1 {
		t.Fatalf("StopSandbox: %v, %d stops", err, c.stops)
	}
	if _, err := r.ReadySandbox(sb); !errors.Is(err, runtime.ErrState) {
		t.Fatalf("ReadySandbox of a stopped sandbox: %v", err)
	}
	if err := r.StopSandbox(ctx, "nope"); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("StopSandbox of an unknown sandbox: %v", err)
	}
	busy := errors.New("busy")
	if _, ok, err := r.RemoveContainer("c1", func(*fakeContainer) error { return busy }); !ok || !errors.Is(err, busy) || r.Len() != 1 {
		t.Fatalf("refused RemoveContainer: %v %v", ok, err)
	}
	var removed []string
	err = r.RemoveSandbox(ctx, sb, func(ctx context.Context, id string) error {
		removed = append(removed, id)
		_, _, err := r.RemoveContainer(id, func(*fakeContainer) error { return nil })
		return err
	})
	if err != nil || len(removed) != 1 || r.Len() != 0 {
		t.Fatalf("RemoveSandbox: %v, removed %v", err, removed)
	}
	if _, ok := r.Sandbox(sb); ok {
		t.Fatal("sandbox still there")
	}
	if err := r.RemoveSandbox(ctx, sb, nil); err != nil {
		t.Fatalf("second RemoveSandbox: %v", err)
	}
	if _, ok := r.Close(); !ok {
		t.Fatal("first Close reported closed")
	}
	if _, ok := r.Close(); ok {
		t.Fatal("second Close did not report closed")
	}
	if _, err := r.AddSandbox(runtime.PodSandboxConfig{}); !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("AddSandbox after Close: %v", err)
	}
}
