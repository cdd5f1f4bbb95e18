package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images/imagetest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
	"github.com/edgeorch/edgeorch/test/bench/proc"
	"golang.org/x/sys/unix"
)

// panicTB lets the harness use imagetest's builders outside a test: a
// failure panics with the message.
type panicTB struct{ testing.TB }

func (panicTB) Helper()                        {}
func (panicTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// benchOCI prints apply→Running of a container pod against raw `runc run -d`
// of the same image, and the cost of many container pods on one agent.
func benchOCI(ctx context.Context, c *client.Client, ag *proc.Daemon, agentDir string, samples, loaded int) error {
	runc, err := exec.LookPath("runc")
	if err != nil {
		fmt.Println("\n# container pods: skipped, runc not found")
		return nil
	}
	img := imagetest.Busybox(panicTB{}, v1.Config{Cmd: []string{"sleep", "3600"}})
	if _, err := c.PushImage(ctx, "busybox:bench", img); err != nil {
		return fmt.Errorf("push busybox: %w", err)
	}
	events, err := c.Watch(ctx, "pods", "default", "bench=oci")
	if err != nil {
		return err
	}
	running := map[string]time.Time{}
	waitRunning := func(names ...string) error {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		for {
			done := true
			for _, n := range names {
				if _, ok := running[n]; !ok {
					done = false
				}
			}
			if done {
				return nil
			}
			select {
			case ev := <-events:
				if p, ok := ev.Object.(*manifests.Pod); ok && p.Status.Phase == manifests.PodRunning {
					if _, seen := running[p.Name]; !seen {
						running[p.Name] = time.Now()
					}
				}
			case <-wctx.Done():
				return fmt.Errorf("container pods not Running: %w", wctx.Err())
			}
		}
	}
	var lat []time.Duration
	for i := 0; i <= samples; i++ {
		name := fmt.Sprintf("oci-%d", i)
		t0 := time.Now()
		if _, _, err := c.ApplyRaw(ctx, ociPod(name, "oci"), false); err != nil {
			return fmt.Errorf("apply %s: %w", name, err)
		}
		if err := waitRunning(name); err != nil {
			return err
		}
		if i > 0 { // the first pulls and unpacks the image
			lat = append(lat, running[name].Sub(t0))
		}
		if _, err := c.Delete(ctx, "pods", "default", name); err != nil {
			return err
		}
	}
	raw, err := rawRunc(ctx, runc, filepath.Join(agentDir, "images", "unpacked"), samples)
	if err != nil {
		return err
	}
	fmt.Printf("\n# apply → Running, container pod, image cached (%d samples)\n", len(lat))
	figures.Duration(figures.OCIApplyMedian, figures.Percentile(lat, 50), "")
	figures.Duration(figures.OCIApplyP99, figures.Percentile(lat, 99), "")
	fmt.Println("# raw runc run -d of a bundle over the same rootfs, same run")
	figures.Duration(figures.RawRuncMedian, figures.Percentile(raw, 50), "")
	figures.Duration(figures.RawRuncP99, figures.Percentile(raw, 99), "")
	if r := figures.Percentile(raw, 50); r > 0 {
		figures.Record(figures.OCIOverRaw, float64(figures.Percentile(lat, 50))/float64(r), "x", "<= 2 x")
	}

	// Wait for the deleted pods' containers to be gone before loading.
	if err := proc.PollFor(ctx, time.Minute, 200*time.Millisecond, func() error {
		if n := len(shimPIDs(ag.PID())); n > 0 {
			return fmt.Errorf("%d shims still running", n)
		}
		return nil
	}); err != nil {
		return err
	}
	names := make([]string, loaded)
	t0 := time.Now()
	for i := range names {
		names[i] = fmt.Sprintf("oci-load-%d", i)
		if _, _, err := c.ApplyRaw(ctx, ociPod(names[i], "oci-load"), false); err != nil {
			return err
		}
	}
	if err := waitRunning(names...); err != nil {
		return err
	}
	took := time.Since(t0)
	time.Sleep(2 * time.Second)
	shims := shimPIDs(ag.PID())
	var shimKiB, shimPssKiB int
	for _, pid := range shims {
		shimKiB += proc.RSSKiB(pid)
		shimPssKiB += proc.PSSKiB(pid)
	}
	fmt.Printf("\n# %d container pods applied at once on one agent\n", loaded)
	fmt.Printf("all Running after    %8s\n", took.Round(time.Millisecond))
	fmt.Printf("edge-agent RSS       %6.1f MiB\n", float64(proc.RSSKiB(ag.PID()))/1024)
	fmt.Printf("shims (%d) RSS total %6.1f MiB, PSS total %6.1f MiB (binary pages shared)\n", len(shims), float64(shimKiB)/1024, float64(shimPssKiB)/1024)
	for _, n := range names {
		c.Delete(ctx, "pods", "default", n)
	}
	// Containers outlive the agent by design: wait until it has removed
	// them before the harness stops it.
	return proc.PollFor(ctx, time.Minute, 200*time.Millisecond, func() error {
		if n := len(shimPIDs(ag.PID())); n > 0 {
			return fmt.Errorf("%d container shims still running", n)
		}
		return nil
	})
}

func ociPod(name, label string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "labels": map[string]string{"bench": "oci", "set": label}},
		"spec": map[string]any{
			"terminationGracePeriodSeconds": 0,
			"containers": []any{map[string]any{
				"name": "c", "image": "busybox:bench", "imagePullPolicy": "IfNotPresent",
				"resources": map[string]any{"limits": map[string]any{"memory": "32Mi"}},
			}},
		},
	})
	return b
}

// shimPIDs lists the processes whose executable is the agent's but that
// are not the agent: its container shims. A spare shim, started ahead of
// the next container and waiting for its configuration, still has its
// standard output on /dev/null (a working shim's goes to its shim.log):
// it runs no container and is left out.
func shimPIDs(agentPID int) []int {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", agentPID))
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == agentPID {
			continue
		}
		if p, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || p != exe {
			continue
		}
		if o, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", pid)); o == os.DevNull {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// rawRunc times `runc run -d` of a bundle over the rootfs the agent
// unpacked, the floor for a container pod start.
func rawRunc(ctx context.Context, runc, unpacked string, n int) ([]time.Duration, error) {
	ents, err := os.ReadDir(unpacked)
	if err != nil || len(ents) == 0 {
		return nil, fmt.Errorf("raw runc: no unpacked image in %s: %v", unpacked, err)
	}
	rootfs := filepath.Join(unpacked, ents[0].Name(), "rootfs")
	dir, err := os.MkdirTemp("", "raw-runc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bundle, root := filepath.Join(dir, "bundle"), filepath.Join(dir, "root")
	os.MkdirAll(bundle, 0o755)
	if out, err := exec.CommandContext(ctx, runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("runc spec: %v: %s", err, out)
	}
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, err
	}
	process := spec["process"].(map[string]any)
	process["terminal"] = false
	process["args"] = []string{"sleep", "3600"}
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	b, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
	// The container's init is orphaned when `runc run -d` returns; become
	// its reaper, or it stays a zombie and `runc delete` never succeeds.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("raw runc: subreaper: %w", err)
	}
	var out []time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("edge-bench-raw-%d-%d", os.Getpid(), i)
		// The container inherits runc's stdio: give it files, not pipes,
		// or waiting for runc waits for the container.
		errFile, err := os.CreateTemp(dir, "stderr")
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, runc, "--root", root, "run", "-d", "--bundle", bundle, id)
		cmd.Stderr = errFile
		t0 := time.Now()
		err = cmd.Run()
		errFile.Close()
		if err != nil {
			o, _ := os.ReadFile(errFile.Name())
			return nil, fmt.Errorf("runc run -d: %v: %s", err, strings.TrimSpace(string(o)))
		}
		out = append(out, time.Since(t0))
		var st struct {
			Pid int `json:"pid"`
		}
		if o, err := exec.Command(runc, "--root", root, "state", id).Output(); err == nil {
			json.Unmarshal(o, &st)
		}
		exec.Command(runc, "--root", root, "kill", id, "KILL").Run()
		if st.Pid > 0 {
			var ws unix.WaitStatus
			unix.Wait4(st.Pid, &ws, 0, nil)
		}
		if err := proc.Poll(ctx, 10*time.Millisecond, func() error {
			return exec.Command(runc, "--root", root, "delete", id).Run()
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
