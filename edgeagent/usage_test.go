package edgeagent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
	"github.com/edgeorch/edgeorch/runtime/oci"
)

// statsRuntime is runtime/fake with usage figures the test sets.
type statsRuntime struct {
	*fake.Runtime
	mu    sync.Mutex
	stats map[string]runtime.ContainerStats
}

func (r *statsRuntime) ContainerStats(_ context.Context, id string) (runtime.ContainerStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.stats[id]
	if !ok {
		return st, fmt.Errorf("stats of %s: %w", id, runtime.ErrNotFound)
	}
	return st, nil
}

func (r *statsRuntime) set(id string, st runtime.ContainerStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats[id] = st
}

// runPodContainer runs a fake container of pod ns/name labelled as the
// agent labels them.
func runPodContainer(t *testing.T, rt runtime.Runtime, ns, pod, uid, name string) string {
	t.Helper()
	ctx := context.Background()
	sb, err := rt.RunPodSandbox(ctx, runtime.PodSandboxConfig{Name: pod, Namespace: ns, UID: uid, LogDirectory: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := rt.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: name, Image: "fake://run", LogPath: name + ".log",
		Labels: map[string]string{labelPodName: pod, labelPodNamespace: ns, labelPodUID: uid, labelContainerName: name}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.StopContainer(context.Background(), id, time.Second) })
	return id
}

func writeProc(t *testing.T, dir string, busy, total uint64, memTotalKiB, memAvailKiB uint64) {
	t.Helper()
	// user nice system idle iowait irq softirq steal guest guest_nice
	idle := total - busy - 10
	stat := fmt.Sprintf("cpu  %d 0 0 %d 10 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\nintr 1 2 3\n", busy, idle)
	mem := fmt.Sprintf("MemTotal:       %d kB\nMemFree:          1000 kB\nMemAvailable:   %d kB\nBuffers: 1 kB\n", memTotalKiB, memAvailKiB)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "meminfo"), []byte(mem), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUsageSampler(t *testing.T) {
	proc := t.TempDir()
	rt := &statsRuntime{Runtime: fake.New("oci"), stats: map[string]runtime.ContainerStats{}}
	wasmLike := &statsRuntime{Runtime: fake.New("wasm"), stats: map[string]runtime.ContainerStats{}}
	plain := fake.New("fake") // no runtime.Statser: not sampled
	web := runPodContainer(t, rt, "default", "web", "uid-web", "web")
	side := runPodContainer(t, rt, "default", "web", "uid-web", "sidecar")
	mod := runPodContainer(t, wasmLike, "edge", "mod", "uid-mod", "main")
	runPodContainer(t, plain, "default", "plain", "uid-plain", "main")
	t0 := time.Now()
	rt.set(web, runtime.ContainerStats{MemoryBytes: 10 << 20, CPUNanoSecs: 1e9, Timestamp: t0})
	rt.set(side, runtime.ContainerStats{MemoryBytes: 2 << 20, CPUNanoSecs: 5e8, Timestamp: t0})
	wasmLike.set(mod, runtime.ContainerStats{MemoryBytes: 128 << 10, Timestamp: t0})
	writeProc(t, proc, 100, 1000, 1_000_000, 600_000)
	s := newUsageSampler(proc, map[string]runtime.Runtime{"oci": rt, "wasm": wasmLike, "fake": plain})

	// First sample: memory only.
	r, err := s.sample(context.Background(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Node.Metadata.Name != "n1" || r.Node.Usage["memory"] != "400000Ki" || r.Node.Usage["cpu"] != "" || r.Node.Window != "0s" {
		t.Fatalf("first node sample: %+v", r.Node)
	}
	if len(r.Pods) != 2 || r.Pods[0].Metadata.Name != "web" || r.Pods[1].Metadata.Name != "mod" || r.Pods[1].Metadata.Namespace != "edge" {
		t.Fatalf("first pods: %+v", r.Pods)
	}
	if c := r.Pods[0].Containers; len(c) != 2 || c[1].Usage["memory"] != "10240Ki" || c[1].Usage["cpu"] != "" {
		t.Fatalf("first web sample: %+v", r.Pods[0])
	}
	if c := r.Pods[1].Containers; len(c) != 1 || c[0].Usage["memory"] != "128Ki" {
		t.Fatalf("wasm pod: %+v", r.Pods[1])
	}

	// Second sample: CPU as a rate over the window.
	rt.set(web, runtime.ContainerStats{MemoryBytes: 12 << 20, CPUNanoSecs: 1.5e9, Timestamp: t0.Add(2 * time.Second)})
	rt.set(side, runtime.ContainerStats{MemoryBytes: 2 << 20, CPUNanoSecs: 5e8, Timestamp: t0.Add(2 * time.Second)})
	writeProc(t, proc, 300, 2000, 1_000_000, 500_000)
	r, err = s.sample(context.Background(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	// 200 busy ticks of 1000, on 2 CPUs: 0.4 cores.
	if r.Node.Usage["cpu"] != "400000000n" || r.Node.Usage["memory"] != "500000Ki" {
		t.Fatalf("second node sample: %+v", r.Node)
	}
	pods := map[string]client.PodMetrics{}
	for _, p := range r.Pods {
		pods[p.Metadata.Namespace+"/"+p.Metadata.Name] = p
	}
	webM := pods["default/web"]
	if webM.Metadata.UID != "uid-web" || webM.Window != "2s" || len(webM.Containers) != 2 {
		t.Fatalf("web: %+v", webM)
	}
	// Sorted by name: sidecar, web. 0.5s of CPU in 2s: 250m.
	if c := webM.Containers[1]; c.Name != "web" || c.Usage["cpu"] != "250000000n" || c.Usage["memory"] != "12288Ki" {
		t.Fatalf("web container: %+v", c)
	}
	if c := webM.Containers[0]; c.Name != "sidecar" || c.Usage["cpu"] != "0n" {
		t.Fatalf("idle sidecar: %+v", c)
	}
	modM := pods["edge/mod"]
	if len(modM.Containers) != 1 || modM.Containers[0].Usage["memory"] != "128Ki" {
		t.Fatalf("wasm pod: %+v", modM)
	}
	if _, ok := modM.Containers[0].Usage["cpu"]; ok {
		t.Fatalf("a runtime without CPU time got a CPU figure: %+v", modM)
	}
	if _, ok := pods["default/plain"]; ok {
		t.Fatal("a runtime without stats was sampled")
	}

	// A container gone is forgotten.
	rt.StopContainer(context.Background(), side, time.Second)
	if _, err = s.sample(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.ctrs["oci/"+side]; ok {
		t.Fatal("the stopped container's sample was kept")
	}
}

func TestUsageProcErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ text, want string }{
		{"intr 1\n", "no cpu line"},
		{"cpu 1 2 x 4 5\n", "field 3 of the cpu line"},
		{"cpu 1 2\n", "short cpu line"},
	} {
		if _, err := readCPUTimes(write("stat", tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("stat %q: %v, want %q", tc.text, err, tc.want)
		}
	}
	if _, err := readMemUsed(write("meminfo", "MemTotal: 100 kB\n")); err == nil || !strings.Contains(err.Error(), "MemTotal and MemAvailable required") {
		t.Errorf("meminfo without MemAvailable: %v", err)
	}
	if _, err := readMemUsed(write("meminfo", "MemTotal: lots kB\nMemAvailable: 1 kB\n")); err == nil || !strings.Contains(err.Error(), "MemTotal") {
		t.Errorf("bad MemTotal: %v", err)
	}
	// The real files of this machine.
	if _, err := readCPUTimes("/proc/stat"); err != nil {
		t.Error(err)
	}
	if used, err := readMemUsed("/proc/meminfo"); err != nil || used == 0 {
		t.Errorf("/proc/meminfo: %d, %v", used, err)
	}
	for _, d := range []time.Duration{0, 15 * time.Second, 150 * time.Second} {
		if err := CheckUsageInterval(d); err != nil {
			t.Errorf("usage interval %v: %v", d, err)
		}
	}
	for _, d := range []time.Duration{-time.Second, 500 * time.Millisecond, time.Hour} {
		if err := CheckUsageInterval(d); err == nil || !strings.Contains(err.Error(), "want 0 (off) or from 1s to 2m30s") {
			t.Errorf("usage interval %v: %v", d, err)
		}
	}
}

// TestOCIUsage runs a busybox container under runc that holds 32 MiB and
// spins, and reads its usage from the cgroups as the agent reports it.
func TestOCIUsage(t *testing.T) {
	image := busyboxImage(t)
	for _, a := range []string{"head", "tr"} {
		if err := os.Symlink("busybox", filepath.Join(image, "rootfs", "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rt, err := oci.New(ctx, oci.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, rt, &fakeAPI{})
	grace := int64(1)
	p := ociPod(image)
	p.Name, p.UID = "hog", "uid-hog"
	p.Spec.TerminationGracePeriodSeconds = &grace
	p.Spec.Containers[0].Command = []string{"sh", "-c", `x=$(head -c 33554432 /dev/zero | tr '\0' a); while :; do :; done`}
	w := newPodWorker(a, &state.Pod{Pod: p, Revision: 1})
	defer w.teardown(context.Background())
	if cs := syncStatus(t, w); cs.State.Running == nil {
		t.Fatalf("container not running: %+v", cs)
	}
	s := newUsageSampler("/proc", a.cfg.Runtimes)
	var last client.ContainerMetrics
	eventually(t, 30*time.Second, func() error {
		r, err := s.sample(ctx, "n1")
		if err != nil {
			return err
		}
		pm, ok := r.Pod("default", "hog", "uid-hog")
		if !ok || len(pm.Containers) != 1 {
			return fmt.Errorf("pod hog not sampled: %+v", r.Pods)
		}
		last = pm.Containers[0]
		if mem := last.Usage["memory"].Value(); mem < 30<<20 {
			return fmt.Errorf("memory %s, want at least 30Mi (it holds 32Mi)", last.Usage["memory"])
		}
		if cpu := last.Usage["cpu"].MilliValue(); cpu < 100 {
			return fmt.Errorf("cpu %q, want at least 100m (a busy loop)", last.Usage["cpu"])
		}
		return nil
	})
	t.Logf("busy container holding 32Mi: %v", last.Usage)
}
