// Command bench starts a real control plane and agent from bin/ and prints
// figures: apply→Running latency of a wasm pod (with the raw wazero time
// measured in the same run), the same for a container pod against raw
// `runc run -d`, API writes per second against raw JetStream KV puts,
// resident (RSS) and proportional (PSS) memory of both daemons idle and with
// 50 wasm pods, and binary sizes. Each figure is recorded with its goal
// through test/bench/internal/figures (appended to $EDGE_BENCH_OUT if set).
//
// Run it with `make bench` (which builds bin/ and the test modules first).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/test/bench/cluster"
	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
	"github.com/edgeorch/edgeorch/test/bench/proc"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the three binaries")
	wasmDir := flag.String("wasm", "wasm/build", "directory holding the built test modules")
	pods := flag.Int("pods", 30, "apply→Running samples")
	loaded := flag.Int("loaded", 50, "wasm pods running for the loaded memory figure")
	writes := flag.Int("writes", 500, "API writes for the write-rate figure")
	flag.IntVar(&ociLoaded, "oci-loaded", 20, "container pods applied at once for the loaded container figures")
	flag.Parse()
	if err := run(*bin, *wasmDir, *pods, *loaded, *writes); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// ociLoaded is how many container pods benchOCI applies at once.
var ociLoaded int

func run(bin, wasmDir string, samples, loaded, writes int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "edge-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Println("# binaries (stripped)")
	for _, b := range []struct{ file, name, goal string }{
		{"edgectl", figures.SizeEdgectl, ""},
		{"edge-controlplane", figures.SizeControlPlane, ""},
		{"edge-agent", figures.SizeAgent, "< 20 MB"},
	} {
		st, err := os.Stat(filepath.Join(bin, b.file))
		if err != nil {
			return fmt.Errorf("binary %s: %w (run make build)", b.file, err)
		}
		figures.Record(b.name, float64(st.Size())/1e6, "MB", b.goal)
	}

	cp, url, err := cluster.StartControlPlane(ctx, bin, tmp, 50*time.Millisecond)
	if err != nil {
		return err
	}
	defer cp.Stop()
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := client.New(nc)

	ag, err := cluster.StartAgent(bin, tmp, url, "bench")
	if err != nil {
		return err
	}
	defer ag.Stop()
	if err := proc.Poll(ctx, 100*time.Millisecond, func() error { return cluster.NodeReady(ctx, c, "bench") }); err != nil {
		return fmt.Errorf("wait node: %w", err)
	}
	time.Sleep(2 * time.Second) // let both daemons settle before the idle figure
	fmt.Println("\n# memory (VmRSS, and PSS from smaps_rollup), idle")
	cpPID, agPID := cp.PID(), ag.PID()
	figures.MiB(figures.ControlPlaneRSSIdle, proc.RSSKiB(cpPID), "< 40 MiB")
	figures.MiB(figures.ControlPlanePSSIdle, proc.PSSKiB(cpPID), "")
	figures.MiB(figures.AgentRSSIdle, proc.RSSKiB(agPID), "< 15 MiB")
	figures.MiB(figures.AgentPSSIdle, proc.PSSKiB(agPID), "")

	for _, m := range []string{"sleep", "exit"} {
		f, err := os.Open(filepath.Join(wasmDir, m+".wasm"))
		if err != nil {
			return fmt.Errorf("module %s: %w (run make wasm)", m, err)
		}
		_, err = c.PushModule(ctx, m+":bench", f)
		f.Close()
		if err != nil {
			return fmt.Errorf("push %s: %w", m, err)
		}
	}

	// apply → Running, one pod at a time; the module is in the agent's
	// cache after the first sample, which is dropped.
	events, err := c.Watch(ctx, "pods", "default", "bench=latency")
	if err != nil {
		return err
	}
	running := map[string]time.Time{}
	waitRunning := func(name string) (time.Time, error) {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		for {
			if t, ok := running[name]; ok {
				return t, nil
			}
			select {
			case ev, ok := <-events:
				if !ok {
					return time.Time{}, fmt.Errorf("watch ended")
				}
				p, ok := ev.Object.(*manifests.Pod)
				if ok && p.Status.Phase == manifests.PodRunning {
					if _, seen := running[p.Name]; !seen {
						running[p.Name] = time.Now()
					}
				}
			case <-wctx.Done():
				return time.Time{}, fmt.Errorf("pod %s not Running: %w", name, wctx.Err())
			}
		}
	}
	var lat []time.Duration
	for i := 0; i <= samples; i++ {
		name := fmt.Sprintf("lat-%d", i)
		pod := podManifest(name, "sleep:bench", map[string]string{"bench": "latency"})
		t0 := time.Now()
		if _, _, err := c.ApplyRaw(ctx, pod, false); err != nil {
			return fmt.Errorf("apply %s: %w", name, err)
		}
		t1, err := waitRunning(name)
		if err != nil {
			return err
		}
		if i > 0 {
			lat = append(lat, t1.Sub(t0))
		}
		if _, err := c.Delete(ctx, "pods", "default", name); err != nil {
			return err
		}
	}
	raw, err := rawWazero(ctx, filepath.Join(wasmDir, "exit.wasm"), samples)
	if err != nil {
		return err
	}
	fmt.Printf("\n# apply → Running, wasm pod, module cached (%d samples)\n", len(lat))
	figures.Duration(figures.WasmApplyMedian, figures.Percentile(lat, 50), "< 10 ms")
	figures.Duration(figures.WasmApplyP99, figures.Percentile(lat, 99), "")
	fmt.Println("# raw wazero: instantiate+run of exit.wasm, compiled once, in process")
	figures.Duration(figures.RawWazeroMedian, figures.Percentile(raw, 50), "")
	figures.Duration(figures.RawWazeroP99, figures.Percentile(raw, 99), "")

	// Loaded agent.
	for i := 0; i < loaded; i++ {
		if _, _, err := c.ApplyRaw(ctx, podManifest(fmt.Sprintf("load-%d", i), "sleep:bench", map[string]string{"bench": "load"}), false); err != nil {
			return err
		}
	}
	if err := proc.Poll(ctx, 200*time.Millisecond, func() error {
		return cluster.PodsRunning(ctx, c, "default", "bench=load", loaded)
	}); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	fmt.Printf("\n# memory (VmRSS, PSS), %d wasm pods running\n", loaded)
	if loaded == 50 {
		figures.MiB(figures.ControlPlaneRSS50, proc.RSSKiB(cpPID), "")
		figures.MiB(figures.ControlPlanePSS50, proc.PSSKiB(cpPID), "")
		figures.MiB(figures.AgentRSS50, proc.RSSKiB(agPID), "< 30 MiB")
		figures.MiB(figures.AgentPSS50, proc.PSSKiB(agPID), "")
	} else { // not the figure: print it under its own name
		n := fmt.Sprintf(", %d wasm pods", loaded)
		figures.MiB("control plane RSS"+n, proc.RSSKiB(cpPID), "")
		figures.MiB("control plane PSS"+n, proc.PSSKiB(cpPID), "")
		figures.MiB("agent RSS"+n, proc.RSSKiB(agPID), "")
		figures.MiB("agent PSS"+n, proc.PSSKiB(agPID), "")
	}

	// API writes (sync on every write, the default) against raw KV puts.
	t0 := time.Now()
	for i := 0; i < writes; i++ {
		cm := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w-%d"},"data":{"k":"v"}}`, i)
		if _, _, err := c.ApplyRaw(ctx, json.RawMessage(cm), false); err != nil {
			return err
		}
	}
	apiRate := float64(writes) / time.Since(t0).Seconds()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench-raw"})
	if err != nil {
		return err
	}
	val := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w"},"data":{"k":"v"}}`)
	t0 = time.Now()
	for i := 0; i < writes; i++ {
		if _, err := kv.Put(ctx, fmt.Sprintf("k%d", i), val); err != nil {
			return err
		}
	}
	rawRate := float64(writes) / time.Since(t0).Seconds()
	js.DeleteKeyValue(ctx, "bench-raw")
	fmt.Printf("\n# writes, one writer, sync on every write (%d each; API at %.0f%% of raw)\n", writes, 100*apiRate/rawRate)
	figures.Record(figures.APIWrites, apiRate, "/s", "")
	figures.Record(figures.RawKVPuts, rawRate, "/s", "")
	return benchOCI(ctx, c, ag, filepath.Join(tmp, "agent"), samples, ociLoaded)
}

func podManifest(name, image string, labels map[string]string) json.RawMessage {
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "labels": labels},
		"spec": map[string]any{
			"runtimeClassName": "wasm",
			"containers": []any{map[string]any{
				"name": "c", "image": image,
				"resources": map[string]any{"limits": map[string]any{"memory": "8Mi"}},
			}},
		},
	}
	b, _ := json.Marshal(pod)
	return b
}

// rawWazero times instantiate+run of a module that exits at once, with a
// warm compilation, the floor for a wasm pod start.
func rawWazero(ctx context.Context, path string, n int) ([]time.Duration, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	cm, err := r.CompileModule(ctx, bin)
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		mod, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithArgs("exit", "0").WithName(""))
		if err != nil {
			if ee, ok := err.(*sys.ExitError); !ok || ee.ExitCode() != 0 {
				return nil, fmt.Errorf("raw wazero: %w", err)
			}
		}
		out = append(out, time.Since(t0))
		if mod != nil {
			mod.Close(ctx)
		}
	}
	return out, nil
}
