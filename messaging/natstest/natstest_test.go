package natstest

import (
	"context"
	"testing"
)

func TestStart(t *testing.T) {
	e := Start(t, "natstest")
	ctx := context.Background()
	if _, err := e.Buckets.Objects.Put(ctx, "pods._.x", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if !e.Conn.IsConnected() || e.URL == "" {
		t.Fatalf("not connected to %q", e.URL)
	}
}
