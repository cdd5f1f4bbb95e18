package edgeagent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/metrics/metricstest"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
	"github.com/nats-io/nats.go"
)

// TestAgentMetrics runs an agent with --metrics-listen on the fake
// runtime, assigns it a pod with a readiness probe, and scrapes /metrics
// with Prometheus' parser until the pod, its container start, its probes
// and the heartbeat are counted.
func TestAgentMetrics(t *testing.T) {
	cp := startControlPlane(t)
	nc, err := nats.Connect(cp.url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	metricsURL := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nc, Config{
			NodeName: "node-1", DataDir: t.TempDir(), Address: "10.1.2.3",
			HeartbeatInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, PassImages: true,
			Runtimes:      map[string]runtime.Runtime{manifests.RuntimeOCI: fake.New(manifests.RuntimeOCI)},
			Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			MetricsListen: "127.0.0.1:0",
			MetricsReady:  func(u string) { metricsURL <- u },
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	var url string
	select {
	case url = <-metricsURL:
	case err := <-done:
		t.Fatalf("agent ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("metrics not served within 10s")
	}

	pod := ociPod("fake://run")
	pod.UID = ""
	pod.Spec.NodeName = "node-1"
	pod.Spec.Containers[0].ReadinessProbe = &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"true"}}, PeriodSeconds: 1}
	pod.Spec.Containers[0].LivenessProbe = &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"false"}}, PeriodSeconds: 1, FailureThreshold: 100}
	cp.assign(t, pod)

	want := []struct {
		name   string
		labels []string
		ok     func(v float64) bool
		what   string
	}{
		{"edge_agent_container_starts_total", []string{"runtime", "oci"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"edge_agent_container_start_duration_seconds", []string{"runtime", "oci"}, func(v float64) bool { return v >= 1 }, "count >= 1"},
		{"edge_agent_pods", []string{"phase", "Running"}, func(v float64) bool { return v == 1 }, "1"},
		{"edge_agent_pods", []string{"phase", "Failed"}, func(v float64) bool { return v == 0 }, "0"},
		{"edge_agent_containers", []string{"runtime", "oci", "state", "running"}, func(v float64) bool { return v == 1 }, "1"},
		{"edge_agent_probe_total", []string{"type", "readiness", "result", "success"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"edge_agent_probe_total", []string{"type", "liveness", "result", "failure"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"edge_agent_probe_total", []string{"type", "startup", "result", "success"}, func(v float64) bool { return v == 0 }, "0"},
		{"edge_agent_probe_duration_seconds", []string{"type", "readiness"}, func(v float64) bool { return v >= 1 }, "count >= 1"},
		{"edge_agent_connected", nil, func(v float64) bool { return v == 1 }, "1"},
		{"edge_agent_outbox_entries", nil, func(v float64) bool { return v >= 0 }, "present"},
		{"edge_agent_last_heartbeat_timestamp_seconds", nil, func(v float64) bool {
			return v > float64(time.Now().Add(-time.Minute).Unix()) && v <= float64(time.Now().Unix()+1)
		}, "within the last minute"},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 1<<20 }, "> 1 MiB"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
	}
	var body []byte
	eventually(t, 15*time.Second, func() error {
		fams, b, err := metricstest.Scrape(url, "")
		body = b
		if err != nil {
			return err
		}
		for _, w := range want {
			v, ok := fams.Sample(w.name, w.labels...)
			if !ok || !w.ok(v) {
				return fmt.Errorf("%s%v = %v (found %v), want %s", w.name, w.labels, v, ok, w.what)
			}
		}
		return nil
	})
	if strings.Contains(string(body), "edge_api_request") {
		t.Error("the agent's /metrics carries the control plane's families")
	}
	t.Logf("agent /metrics: %d bytes", len(body))
}

func TestAgentMetricsListenInvalid(t *testing.T) {
	cp := startControlPlane(t)
	nc, err := nats.Connect(cp.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = Run(ctx, nc, Config{NodeName: "node-1", DataDir: filepath.Join(t.TempDir(), "a"), MetricsListen: "9464",
		Runtimes: map[string]runtime.Runtime{manifests.RuntimeOCI: fake.New(manifests.RuntimeOCI)}, PassImages: true})
	if err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Fatalf("Run with --metrics-listen 9464: err = %v, want one naming the flag", err)
	}
}
