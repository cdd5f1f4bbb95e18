package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/metrics"
	"github.com/edgeorch/edgeorch/metrics/metricstest"
)

type namedCtl struct{}

func (namedCtl) Sync(context.Context, string) error { return nil }

func TestControllerName(t *testing.T) {
	if got := controllerName(namedCtl{}.Sync); got != "controller" {
		t.Fatalf("controllerName(method) = %q, want controller", got)
	}
	if got := controllerName(func(context.Context, string) error { return nil }); got != "controller" {
		t.Fatalf("controllerName(closure) = %q, want controller", got)
	}
}

func scrapeDefault(t *testing.T) metricstest.Families {
	t.Helper()
	var buf bytes.Buffer
	if err := metrics.WriteText(&buf, metrics.Default); err != nil {
		t.Fatal(err)
	}
	fams, err := metricstest.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// TestRunWorkersMetrics: every sync is timed, failures and retries are
// counted apart, and the queue depth is reported while the loop runs.
func TestRunWorkersMetrics(t *testing.T) {
	const name = "metrics-test"
	q := NewQueue(time.Millisecond, 5*time.Millisecond)
	var mu sync.Mutex
	calls := map[string]int{}
	syncKey := func(_ context.Context, key string) error {
		mu.Lock()
		defer mu.Unlock()
		calls[key]++
		switch {
		case key == "fail" && calls[key] == 1:
			return errors.New("boom")
		case key == "wait" && calls[key] == 1:
			return fmt.Errorf("no node fits: %w", ErrRetry)
		}
		return nil
	}
	for _, k := range []string{"ok", "fail", "wait"} {
		q.Add(k)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunNamedWorkers(ctx, name, q, 2, syncKey)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := scrapeDefault(t)
		n, _ := fams.Sample("edge_controller_reconcile_duration_seconds", "controller", name)
		_, tracked := fams.Sample("edge_controller_queue_depth", "controller", name)
		if n == 5 && tracked {
			if v, _ := fams.Sample("edge_controller_reconcile_errors_total", "controller", name); v != 1 {
				t.Errorf("errors = %v, want 1", v)
			}
			if v, _ := fams.Sample("edge_controller_reconcile_retries_total", "controller", name); v != 1 {
				t.Errorf("retries = %v, want 1", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reconciles counted = %v (want 5), queue tracked %v", n, tracked)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if _, tracked := scrapeDefault(t).Sample("edge_controller_queue_depth", "controller", name); tracked {
		t.Error("queue depth still reported after the loop ended")
	}
}
