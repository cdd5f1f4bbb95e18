// Command apply prints the figures of `edgectl apply` and of the API's
// write path (issue 8): it starts a real control plane (--dev, JetStream
// syncing every write, the default) from the binaries in -bin, writes
// -objects manifests (one file each) into a temporary directory per run and
// times `edgectl apply -f DIR` over -runs runs (median and max). Each run
// applies into its own new Namespace (the first manifest of the directory),
// so every run creates all its objects. Then, on the same server, it
// measures API applies per second with one writer and with -writers
// concurrent writers against raw JetStream KV puts with one and -writers
// writers.
//
// Run it with `go run ./test/bench/apply` after `make build`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/test/bench/cluster"
	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
	"github.com/edgeorch/edgeorch/test/bench/proc"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding edgectl and edge-controlplane")
	objects := flag.Int("objects", 1000, "objects per edgectl apply (a Namespace and the rest)")
	runs := flag.Int("runs", 5, "edgectl apply runs (the median is printed)")
	mix := flag.Bool("mix", true, "also time a mix of ConfigMaps, Services and Deployments")
	writes := flag.Int("writes", 1000, "API applies and raw KV puts per write-rate figure")
	writers := flag.Int("writers", 16, "concurrent writers of the concurrent write-rate figures")
	flag.Parse()
	if *objects < 2 || *runs < 1 || *writes < 1 || *writers < 1 {
		fmt.Fprintln(os.Stderr, "apply bench: -objects must be >= 2, -runs, -writes and -writers >= 1")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, *bin, *objects, *runs, *mix, *writes, *writers); err != nil {
		fmt.Fprintln(os.Stderr, "apply bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, objects, runs int, mix bool, writes, writers int) error {
	edgectl := filepath.Join(bin, "edgectl")
	if _, err := os.Stat(edgectl); err != nil {
		return fmt.Errorf("binary edgectl: %w (run make build)", err)
	}
	tmp, err := os.MkdirTemp("", "edge-bench-apply-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	cp, url, err := cluster.StartControlPlane(ctx, bin, tmp, 50*time.Millisecond)
	if err != nil {
		return err
	}
	defer cp.Stop()
	nc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	c := client.New(nc)
	if err := proc.Poll(ctx, 50*time.Millisecond, func() error { _, err := c.Get(ctx, "namespaces", "", "default"); return err }); err != nil {
		return fmt.Errorf("wait for the API: %w", err)
	}
	fmt.Printf("# edgectl apply -f DIR, %d objects (one file each), JetStream syncing every write; %d runs\n", objects, runs)
	kinds := []struct {
		name string
		gen  func(i int) string
	}{{"configmaps", configMap}}
	if mix {
		kinds = append(kinds, struct {
			name string
			gen  func(i int) string
		}{"mixed", mixed})
	}
	for _, k := range kinds {
		var times, cpus []time.Duration
		for r := 0; r < runs; r++ {
			ns := fmt.Sprintf("bench-%s-%d", k.name, r)
			dir := filepath.Join(tmp, ns)
			if err := writeManifests(dir, ns, objects, k.gen); err != nil {
				return err
			}
			cpu0 := proc.CPUTime(cp.PID())
			d, ctlCPU, err := edgectlApply(ctx, edgectl, url, dir, objects)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", k.name, r, err)
			}
			times = append(times, d)
			cpus = append(cpus, proc.CPUTime(cp.PID())-cpu0+ctlCPU)
		}
		slices.Sort(times)
		slices.Sort(cpus)
		fmt.Printf("# apply_%d_%s: median of %d, max %.3f s\n", objects, k.name, runs, times[len(times)-1].Seconds())
		name := fmt.Sprintf("edgectl apply of %d objects (%s)", objects, k.name)
		if objects == 1000 && k.name == "configmaps" {
			name = figures.EdgectlApply1000
		}
		figures.Record(name, times[len(times)/2].Seconds(), "s", "< 0.5 s")
		fmt.Printf("apply_%d_%s_cpu  %.3f s  (CPU time of edgectl and the control plane during the apply, median)\n", objects, k.name, cpus[len(cpus)/2].Seconds())
	}
	// A re-apply of the last directory: every object unchanged.
	dir := filepath.Join(tmp, fmt.Sprintf("bench-%s-%d", kinds[len(kinds)-1].name, runs-1))
	d, _, err := edgectlApply(ctx, edgectl, url, dir, objects)
	if err != nil {
		return fmt.Errorf("re-apply: %w", err)
	}
	fmt.Printf("apply_%d_unchanged  %.3f s  (the last directory again, nothing written)\n", objects, d.Seconds())

	fmt.Printf("\n# writes per second, JetStream syncing every write (%d each)\n", writes)
	apiRate := func(w int, prefix string) (float64, error) {
		return rate(ctx, writes, w, func(i int) error {
			cm := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s-%d","namespace":"default"},"data":{"k":"v"}}`, prefix, i)
			_, _, err := c.ApplyRaw(ctx, json.RawMessage(cm), false)
			return err
		})
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench-raw"})
	if err != nil {
		return fmt.Errorf("create raw bucket: %w", err)
	}
	defer js.DeleteKeyValue(context.WithoutCancel(ctx), "bench-raw")
	val := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w","namespace":"default"},"data":{"k":"v"}}`)
	rawRate := func(w int, prefix string) (float64, error) {
		return rate(ctx, writes, w, func(i int) error {
			_, err := kv.Put(ctx, fmt.Sprintf("%s-%d", prefix, i), val)
			return err
		})
	}
	api1, err := apiRate(1, "w1")
	if err != nil {
		return fmt.Errorf("API writes, 1 writer: %w", err)
	}
	raw1, err := rawRate(1, "w1")
	if err != nil {
		return fmt.Errorf("raw KV puts, 1 writer: %w", err)
	}
	apiN, err := apiRate(writers, "wn")
	if err != nil {
		return fmt.Errorf("API writes, %d writers: %w", writers, err)
	}
	rawN, err := rawRate(writers, "wn")
	if err != nil {
		return fmt.Errorf("raw KV puts, %d writers: %w", writers, err)
	}
	// The batch verb edgectl apply uses: batches of 50, 4 in flight.
	const batch = 50
	batches := (writes + batch - 1) / batch
	apiBatched, err := rate(ctx, batches, 4, func(b int) error {
		var objs []json.RawMessage
		for i := b * batch; i < min(writes, (b+1)*batch); i++ {
			objs = append(objs, json.RawMessage(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"wb-%d","namespace":"default"},"data":{"k":"v"}}`, i)))
		}
		items, err := c.ApplyBatch(ctx, objs, false)
		if err != nil {
			return err
		}
		for _, it := range items {
			if it.Error != nil {
				return it.Error
			}
		}
		return nil
	})
	noBatch := errors.Is(err, client.ErrApplyBatchUnsupported) // an older control plane
	if err != nil && !noBatch {
		return fmt.Errorf("API batch writes: %w", err)
	}
	apiBatched *= float64(writes) / float64(batches)
	fmt.Printf("api_writes_1_writer  %.0f /s  (raw KV put, 1 writer: %.0f /s; API at %.0f%%)\n", api1, raw1, 100*api1/raw1)
	fmt.Printf("raw_kv_puts_1_writer  %.0f /s\n", raw1)
	figures.Record(figures.APIWrites, api1, "/s", "")
	figures.Record(figures.RawKVPuts, raw1, "/s", "")
	fmt.Printf("api_writes_%d_writers  %.0f /s  (raw KV put, %d writers: %.0f /s; API at %.0f%%)\n", writers, apiN, writers, rawN, 100*apiN/rawN)
	fmt.Printf("raw_kv_puts_%d_writers  %.0f /s\n", writers, rawN)
	if noBatch {
		fmt.Println("api_batch_writes  n/a  (the control plane has no applyBatch)")
		return nil
	}
	fmt.Printf("api_batch_writes  %.0f /s  (applyBatch of %d objects, 4 in flight; raw KV put, %d writers: %.0f /s; API at %.0f%%)\n", apiBatched, batch, writers, rawN, 100*apiBatched/rawN)
	return nil
}

// rate runs do(0..n-1) on w goroutines and returns the calls per second.
func rate(ctx context.Context, n, w int, do func(i int) error) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, w)
	t0 := time.Now()
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := do(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(n) / el.Seconds(), nil
}

// writeManifests writes a Namespace ns (00000.yaml) and n-1 objects of gen
// in it, one file each.
func writeManifests(dir, ns string, n int, gen func(i int) string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("manifests dir: %w", err)
	}
	write := func(i int, doc string) error {
		return os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.yaml", i)), []byte(doc), 0o644)
	}
	// The Namespace sorts first but is not required to: edgectl applies
	// Namespaces before the rest.
	if err := write(n-1, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns)); err != nil {
		return fmt.Errorf("write manifests: %w", err)
	}
	for i := 0; i < n-1; i++ {
		if err := write(i, strings.ReplaceAll(gen(i), "NAMESPACE", ns)); err != nil {
			return fmt.Errorf("write manifests: %w", err)
		}
	}
	return nil
}

func configMap(i int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-%d
  namespace: NAMESPACE
  labels: {app: bench}
data:
  key: value-%d
  config.yaml: |
    level: info
    port: 8080
`, i, i)
}

// mixed is 8 ConfigMaps, 1 Service and 1 Deployment (0 replicas: the
// figure is the apply, not the pods) in every 10 objects.
func mixed(i int) string {
	switch i % 10 {
	case 8:
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: svc-%d
  namespace: NAMESPACE
spec:
  selector: {app: app-%d}
  ports:
  - {port: 80, targetPort: 8080}
`, i, i)
	case 9:
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%d
  namespace: NAMESPACE
spec:
  replicas: 0
  selector:
    matchLabels: {app: app-%d}
  template:
    metadata:
      labels: {app: app-%d}
    spec:
      runtimeClassName: wasm
      containers:
      - name: main
        image: sleep
`, i, i, i)
	}
	return configMap(i)
}

// edgectlApply runs edgectl apply -f dir, checks that it printed one line
// per object and returns how long it took and the CPU time it used.
func edgectlApply(ctx context.Context, edgectl, url, dir string, objects int) (time.Duration, time.Duration, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, edgectl, "--server", url, "apply", "-f", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("edgectl apply -f %s: %w: %s", dir, err, stderr.String())
	}
	if lines := bytes.Count(stdout.Bytes(), []byte("\n")); lines != objects {
		return 0, 0, fmt.Errorf("edgectl apply -f %s: %d lines of output, want %d", dir, lines, objects)
	}
	return d, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}
