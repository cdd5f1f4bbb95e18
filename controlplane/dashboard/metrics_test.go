package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/metrics/metricstest"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
)

// TestMetricsEndpoints starts a control plane with the dashboard (token on)
// and its controllers, and an agent with --metrics-listen on the fake
// runtime; applies a pod; then scrapes both /metrics endpoints and parses
// them with Prometheus' own parser: the control plane counts the node
// Ready, the pod Running, API requests and reconciles; the agent its pod
// and the container start.
func TestMetricsEndpoints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()

	url, dashURL, token := startControlPlane(t, ctx, dir)
	cpMetrics := dashURL + "metrics"

	// Without the token: refused, like the rest of the dashboard.
	resp, err := http.Get(cpMetrics)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without the token: %s, want 401", resp.Status)
	}

	const nodeName, podName = "edge-metrics-1", "hello-metrics"
	nc, err := messaging.Connect(ctx, url, "agent "+nodeName)
	if err != nil {
		t.Fatal(err)
	}
	rts := map[string]runtime.Runtime{}
	for _, h := range []string{fake.HandlerName, manifests.RuntimeOCI, manifests.RuntimeWasm} {
		rts[h] = fake.New(h)
	}
	agentURL := make(chan string, 1)
	agentCtx, agentCancel := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- edgeagent.Run(agentCtx, nc, edgeagent.Config{
			NodeName: nodeName, DataDir: filepath.Join(dir, "agent"), Address: "10.200.0.1",
			HeartbeatInterval: 200 * time.Millisecond, Runtimes: rts, PollInterval: 50 * time.Millisecond, PassImages: true,
			MetricsListen: "127.0.0.1:0", MetricsReady: func(u string) { agentURL <- u },
		})
	}()
	t.Cleanup(func() { // before the control plane's cleanup
		agentCancel()
		if err := <-agentDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
	})
	var agentMetrics string
	select {
	case agentMetrics = <-agentURL:
	case err := <-agentDone:
		t.Fatalf("agent: %v", err)
	case <-ctx.Done():
		t.Fatal("agent metrics not served")
	}

	cl, err := messaging.Connect(ctx, url, "test client")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := &manifests.Pod{}
	p.Namespace, p.Name = "default", podName
	p.Spec.Containers = []manifests.Container{{Name: "app", Image: "fake://run"}}
	if _, _, err := client.New(cl).Apply(ctx, p); err != nil {
		t.Fatalf("apply pod: %v", err)
	}

	type check struct {
		name   string
		labels []string
		ok     func(float64) bool
		what   string
	}
	atLeast1 := func(v float64) bool { return v >= 1 }
	scrapeUntil := func(what, url, token string, checks []check) []byte {
		t.Helper()
		var body []byte
		var last error
		for {
			fams, b, err := metricstest.Scrape(url, token)
			body, last = b, err
			if err == nil {
				last = nil
				for _, c := range checks {
					if v, ok := fams.Sample(c.name, c.labels...); !ok || !c.ok(v) {
						last = fmt.Errorf("%s%v = %v (found %v), want %s", c.name, c.labels, v, ok, c.what)
						break
					}
				}
				if last == nil {
					return body
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s /metrics: %v\n%s", what, last, body)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	cpBody := scrapeUntil("control plane", cpMetrics, token, []check{
		{"edge_nodes", []string{"state", "Ready"}, func(v float64) bool { return v == 1 }, "1"},
		{"edge_nodes", []string{"state", "Unreachable"}, func(v float64) bool { return v == 0 }, "0"},
		{"edge_pods", []string{"phase", "Running"}, func(v float64) bool { return v == 1 }, "1"},
		{"edge_api_request_duration_seconds", []string{"verb", "apply", "code", "OK"}, atLeast1, "count >= 1"},
		{"edge_api_request_duration_seconds", nil, atLeast1, "count >= 1"},
		{"edge_controller_reconcile_duration_seconds", []string{"controller", "scheduler"}, atLeast1, "count >= 1"},
		{"edge_dashboard_cache_synced", nil, func(v float64) bool { return v == 1 }, "1"},
		{"go_goroutines", nil, atLeast1, ">= 1"},
		{"process_resident_memory_bytes", nil, atLeast1, "present"},
	})
	agentBody := scrapeUntil("agent", agentMetrics, "", []check{
		{"edge_agent_container_starts_total", []string{"runtime", manifests.RuntimeOCI}, atLeast1, ">= 1"},
		{"edge_agent_pods", []string{"phase", "Running"}, func(v float64) bool { return v == 1 }, "1"},
		{"edge_agent_connected", nil, func(v float64) bool { return v == 1 }, "1"},
	})
	t.Logf("control plane /metrics: %d bytes, agent /metrics: %d bytes", len(cpBody), len(agentBody))
}
