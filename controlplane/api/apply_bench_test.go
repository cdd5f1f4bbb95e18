package api

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/edgeorch/edgeorch/client"
)

// benchConfigMap is the apply request body of a small ConfigMap.
func benchConfigMap(name string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"namespace":"default","labels":{"app":"bench"}},"data":{"key":"value","config.yaml":"level: info\nport: 8080\n"}}`, name))
}

// BenchmarkApplyCreate times API applies that create a ConfigMap, through
// NATS request/reply, from 16 concurrent writers (the in-process test
// server does not sync every write: the figure is the API's own cost).
func BenchmarkApplyCreate(b *testing.B) {
	e := newEnv(b, Options{})
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 writers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprintf("cm-%d", n.Add(1))
			if _, _, err := e.c.ApplyRaw(ctx, benchConfigMap(name), false); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkApplyUnchanged times applies of an object that is already
// stored as sent: nothing is written.
func BenchmarkApplyUnchanged(b *testing.B) {
	e := newEnv(b, Options{})
	ctx := context.Background()
	raw := benchConfigMap("same")
	res, _, err := e.c.ApplyRaw(ctx, raw, false)
	if err != nil || res != client.ResultCreated {
		b.Fatal(res, err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res, _, err := e.c.ApplyRaw(ctx, raw, false); err != nil || res != client.ResultUnchanged {
				b.Error(res, err)
				return
			}
		}
	})
}
