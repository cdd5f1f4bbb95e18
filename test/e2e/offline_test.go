package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

const offlinePod = `apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  runtimeClassName: wasm
  nodeSelector: {site: a}
  containers:
  - name: hello
    image: hello@sha256:%s
    env:
    - {name: GREETING, value: "offline e2e"}
    resources:
      limits: {memory: 16Mi}
`

// wasmAgentIn starts an agent in the device namespace ns running wasm pods
// only (no pod network, proxy or DNS).
func wasmAgentIn(t *testing.T, ns, ip, url, node, dataDir, labels string) *proc {
	t.Helper()
	return startProcCmd(t, "edge-agent", exec.Command("nsenter", "--net=/run/netns/"+ns, "--",
		filepath.Join(binDir, "edge-agent"), "--server", url, "--node-name", node,
		"--data-dir", dataDir, "--labels", labels, "--address", ip,
		"--heartbeat-interval", "1s", "--service-proxy=false", "--dns-addr="))
}

// criLineTimes returns the timestamps of the CRI log lines of the files
// matching glob.
func criLineTimes(t *testing.T, glob string) []time.Time {
	t.Helper()
	files, _ := filepath.Glob(glob)
	var out []time.Time
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			ts, _, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			if tm, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				out = append(out, tm)
			}
		}
	}
	return out
}

func getFullPod(t *testing.T, url, name string) (*manifests.Pod, error) {
	t.Helper()
	r := ctl(t, url, nil, "get", "pod", name, "-o", "json")
	if r.code != 0 {
		return nil, fmt.Errorf("get pod %s: %s", name, r)
	}
	var p manifests.Pod
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		return nil, fmt.Errorf("get pod %s -o json: %w", name, err)
	}
	return &p, nil
}

// TestOfflineAgent: a device running a wasm pod loses its link; a pod is
// added for it meanwhile; its agent restarts while cut and runs its pod
// again from local state before any connection; once the link is back the
// node is Ready, the statuses are reported and the agent fetched only the
// change (delta resync).
func TestOfflineAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the offline end-to-end test needs root (network namespaces)")
	}
	l := newLab(t)
	ns, ip := l.device(t, "a", 2)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "a")
	_, url := controlPlane(t, filepath.Join(tmp, "cp"), l.hostIP()+":0")
	first := wasmAgentIn(t, ns, ip, url, "dev-a", dir, "site=a")
	mustCtl(t, url, "wait", "--for=condition=Ready", "node/dev-a", "--timeout=30s")
	out := mustCtl(t, url, "push", module(t, "hello"), "--name", "hello:v1")
	digest := regexp.MustCompile(`sha256:([0-9a-f]{64})`).FindStringSubmatch(out)
	if digest == nil {
		t.Fatalf("push printed no digest: %q", out)
	}
	if r := ctl(t, url, strings.NewReader(fmt.Sprintf(offlinePod, "hello", digest[1])), "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply hello: %s", r)
	}
	mustCtl(t, url, "wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
	logGlob := filepath.Join(dir, "pods", "default_hello_*", "logs", "hello", "*.log")

	// Cut the device off; a second pod is placed on it meanwhile.
	ipCmd(t, "-n", ns, "link", "set", "eth0", "down")
	if r := ctl(t, url, strings.NewReader(fmt.Sprintf(offlinePod, "second", digest[1])), "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply second: %s", r)
	}
	eventually(t, 30*time.Second, func() error {
		if p, r := getPod(t, url, "second"); p.Spec.NodeName != "dev-a" {
			return fmt.Errorf("second not placed on dev-a: %q %s", p.Spec.NodeName, r)
		}
		return nil
	})

	// Restart the agent while cut: the pod runs again from local state.
	first.stop(t)
	start := time.Now()
	second := wasmAgentIn(t, ns, ip, url, "dev-a", dir, "site=a")
	var running time.Time
	eventually(t, 30*time.Second, func() error {
		for _, tm := range criLineTimes(t, logGlob) {
			if tm.After(start) {
				running = tm
				return nil
			}
		}
		return fmt.Errorf("no pod output since the agent restarted")
	})
	if strings.Contains(second.out.String(), "resync:") || strings.Contains(second.out.String(), "reconnected") {
		t.Fatalf("agent connected while cut:\n%s", second.out.String())
	}
	t.Logf("offline restart: pod output %v after the agent started (no connection)", running.Sub(start).Round(time.Millisecond))

	// Heal: the node is Ready, the restarted pod's status is reported, the
	// new pod runs and the agent resynced by delta.
	ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
	healed := time.Now()
	mustCtl(t, url, "wait", "--for=condition=Ready", "node/dev-a", "--timeout=60s")
	mustCtl(t, url, "wait", "--for=condition=Ready", "pod/second", "--timeout=60s")
	eventually(t, 30*time.Second, func() error {
		p, err := getFullPod(t, url, "hello")
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Running == nil ||
			p.Status.ContainerStatuses[0].State.Running.StartedAt.Before(start.Truncate(time.Second)) {
			return fmt.Errorf("hello status not reported since the restart: %+v", p.Status.ContainerStatuses)
		}
		return nil
	})
	var line string
	eventually(t, 30*time.Second, func() error {
		// Only the line's start is parsed: what follows "bytes" may change.
		m := resyncLine.FindStringSubmatch(second.out.String())
		if m == nil {
			return fmt.Errorf("no delta resync logged")
		}
		line = m[0]
		changes, _ := strconv.Atoi(m[1])
		got, _ := strconv.Atoi(m[2])
		// The second pod only: hello, unchanged, is not fetched again (a
		// full relist logs "resync: full relist, ..." instead).
		if changes != 1 || got <= 0 {
			t.Fatalf("delta resync: %s, want 1 change", line)
		}
		return nil
	})
	t.Logf("after heal (%v): %s", time.Since(healed).Round(time.Millisecond), line)

	// The resync left the unchanged hello alone: the container the control
	// plane heard of after the heal still runs, and the device's log shows
	// two starts only (the first, and the agent's offline restart), one
	// instance writing since.
	p, err := getFullPod(t, url, "hello")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := runningContainer(p)
	if err != nil {
		t.Fatal(err)
	}
	resynced := time.Now()
	dirs, _ := filepath.Glob(filepath.Join(dir, "pods", "default_hello_*"))
	if len(dirs) != 1 {
		t.Fatalf("hello pod directories on the device: %v", dirs)
	}
	var lines []logLine
	eventually(t, 30*time.Second, func() error {
		lines = podLog(dirs[0])
		if _, ok := saysSince(lines, resynced.Add(1500*time.Millisecond), "offline e2e from "); !ok {
			return fmt.Errorf("hello has not written since the resync")
		}
		return nil
	})
	if n := helloStarts(lines, time.Time{}); n != 2 {
		t.Fatalf("hello started %d times, want 2 (first, offline restart): restarted by the resync", n)
	}
	if err := singleWriter(lines, start); err != nil {
		t.Fatalf("hello: %v", err)
	}
	p, err = getFullPod(t, url, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if now, err := runningContainer(p); err != nil || now.ContainerID != cs.ContainerID || !now.State.Running.StartedAt.Equal(cs.State.Running.StartedAt) {
		t.Fatalf("hello restarted after the heal: %+v (%v), was %s started %v", now, err, cs.ContainerID, cs.State.Running.StartedAt)
	}
}
