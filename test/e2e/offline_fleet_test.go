package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

const fleetConfig = `apiVersion: v1
kind: ConfigMap
metadata: {name: fleet-config}
data: {greeting: %s}
`

// fleetDaemonSet: one hello pod per device, its greeting made of the
// template's revision and the ConfigMap's value. maxUnavailable 100% so
// that a template change replaces the pods of every node at once, the cut
// ones included.
const fleetDaemonSet = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: fleet}
spec:
  selector: {matchLabels: {app: fleet}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: "100%%"}}
  template:
    metadata: {labels: {app: fleet, suite: offline-fleet}}
    spec:
      runtimeClassName: wasm
      nodeSelector: {fleet: "on"}
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: hello@sha256:%s
        env:
        - name: CONF
          valueFrom: {configMapKeyRef: {name: fleet-config, key: greeting}}
        - {name: GREETING, value: "%s $(CONF)"}
        - name: NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        resources:
          limits: {memory: 16Mi}
`

// fleetPod is a bare pod for one device (site label), greeting with the
// ConfigMap's value.
const fleetPod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {suite: offline-fleet}
spec:
  runtimeClassName: wasm
  nodeSelector: {site: %s}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: fleet-config, key: greeting}}
    - name: NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    resources:
      limits: {memory: 16Mi}
`

// fleetDevice is one device of TestOfflineFleet: its namespace, address,
// data directory and agent.
type fleetDevice struct {
	site, ns, ip, dir, node string
	agent                   *proc
}

// logLine is one line of a container log (CRI format) on a device.
type logLine struct {
	file string // path relative to the pod directory: logs/<container>/<n>.log
	at   time.Time
	text string
}

// helloLine is what the hello module prints: "<greeting> from <node> #<n>".
var helloLine = regexp.MustCompile(`^(.*) from (\S+) #(\d+)$`)

// localPods returns the pod directories on a device (name → directory),
// from the agent's data directory: the pods its runtime runs.
func localPods(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "pods"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("read pod directories: %v", err)
	}
	out := map[string]string{}
	for _, e := range entries {
		parts := strings.Split(e.Name(), "_") // namespace_name_uid
		if len(parts) == 3 && parts[0] == "default" {
			out[parts[1]] = filepath.Join(dataDir, "pods", e.Name())
		}
	}
	return out
}

func names(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// podLog returns the container log lines of a pod directory, every
// restart's file included, each file in order.
func podLog(podDir string) []logLine {
	files, _ := filepath.Glob(filepath.Join(podDir, "logs", "*", "*.log"))
	var out []logLine
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(podDir, f)
		for _, line := range strings.Split(string(raw), "\n") {
			// <time> <stream> <tag> <text>
			parts := strings.SplitN(line, " ", 4)
			if len(parts) != 4 {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, parts[0])
			if err != nil {
				continue
			}
			out = append(out, logLine{file: rel, at: at, text: parts[3]})
		}
	}
	return out
}

// helloStarts counts the hello instances a pod's log shows (each starts
// counting at #1), those started after since.
func helloStarts(lines []logLine, since time.Time) int {
	n := 0
	for _, l := range lines {
		if m := helloLine.FindStringSubmatch(l.text); m != nil && m[3] == "1" && !l.at.Before(since) {
			n++
		}
	}
	return n
}

// saysSince is the first line after since that contains want.
func saysSince(lines []logLine, since time.Time, want string) (logLine, bool) {
	for _, l := range lines {
		if !l.at.Before(since) && strings.Contains(l.text, want) {
			return l, true
		}
	}
	return logLine{}, false
}

// singleWriter checks that the lines written after since come from one
// file and, for hello, from one instance: consecutive counters.
func singleWriter(lines []logLine, since time.Time) error {
	file, prev := "", 0
	for _, l := range lines {
		if l.at.Before(since) {
			continue
		}
		if file != "" && l.file != file {
			return fmt.Errorf("written to both %s and %s since %s", file, l.file, since.Format(time.StampMilli))
		}
		file = l.file
		if m := helloLine.FindStringSubmatch(l.text); m != nil {
			n, _ := strconv.Atoi(m[3])
			if prev != 0 && n != prev+1 {
				return fmt.Errorf("%s: counter %d after %d: more than one instance writes it", l.file, n, prev)
			}
			prev = n
		}
	}
	return nil
}

// fleetPods returns the pods of the test by name, from the control plane.
func fleetPods(t *testing.T, url string) map[string]*manifests.Pod {
	t.Helper()
	out := map[string]*manifests.Pod{}
	for _, p := range listPods(t, url, "suite=offline-fleet") {
		out[p.Name] = &p
	}
	return out
}

// daemonPods returns the DaemonSet's pods by node (all of them, to catch a
// node given two).
func daemonPods(pods map[string]*manifests.Pod) map[string][]*manifests.Pod {
	out := map[string][]*manifests.Pod{}
	for _, p := range pods {
		if p.Labels["app"] == "fleet" {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p)
		}
	}
	return out
}

// daemonRevision is the greeting prefix of a DaemonSet pod ("ds-r1").
func daemonRevision(p *manifests.Pod) string {
	for _, e := range p.Spec.Containers[0].Env {
		if e.Name == "GREETING" {
			rev, _, _ := strings.Cut(e.Value, " ")
			return rev
		}
	}
	return ""
}

// runningContainer is the one running container of a pod as the control plane
// last heard of it.
func runningContainer(p *manifests.Pod) (manifests.ContainerStatus, error) {
	if p == nil {
		return manifests.ContainerStatus{}, fmt.Errorf("no such pod")
	}
	cs := p.Status.ContainerStatuses
	if len(cs) != 1 || cs[0].State.Running == nil || !cs[0].Ready {
		return manifests.ContainerStatus{}, fmt.Errorf("pod %s on %q: want one running, ready container, have %+v", p.Name, p.Spec.NodeName, cs)
	}
	return cs[0], nil
}

var resyncLine = regexp.MustCompile(`resync: (\d+) changes, (\d+) bytes`)

// TestOfflineFleet: three devices, each in its own network namespace,
// reach the control plane over a bridge; each runs a DaemonSet pod and
// three bare pods (keep, change, del) whose environment comes from a
// ConfigMap. Device a is cut by taking its link down, device b by removing
// its route to the control plane; c stays connected. While a and b are
// cut the fleet changes: the ConfigMap and the DaemonSet's template change,
// and for each device one pod is added, one changed (new image), one
// deleted. c converges at once. a's agent restarts while cut and runs its
// pods again from its local state (the ConfigMap value it remembered).
// Healed, a reconnects and resyncs by delta; b resyncs by delta if its
// connection dropped, else (a cut shorter than any keepalive: the agent
// sets none, nats.go pings every 2 minutes) TCP delivers what it missed
// over the connection that survived. Either way the changed pods are
// replaced, the deleted ones removed, the kept ones not restarted, and
// every pod runs once, on its device and in the control plane's view.
func TestOfflineFleet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the offline end-to-end test needs root (network namespaces)")
	}
	l := newLab(t)
	tmp := t.TempDir()
	_, url := controlPlane(t, filepath.Join(tmp, "cp"), l.hostIP()+":0")
	sites := []string{"a", "b", "c"}
	devs := map[string]*fleetDevice{}
	for i, s := range sites {
		ns, ip := l.device(t, s, 2+i)
		d := &fleetDevice{site: s, ns: ns, ip: ip, dir: filepath.Join(tmp, s), node: "dev-" + s}
		d.agent = wasmAgentIn(t, ns, ip, url, d.node, d.dir, "site="+s+",fleet=on")
		devs[s] = d
	}
	a, b, c := devs["a"], devs["b"], devs["c"]
	for _, d := range devs {
		mustCtl(t, url, "wait", "--for=condition=Ready", "node/"+d.node, "--timeout=30s")
	}
	digest := func(module, name string) string {
		out := mustCtl(t, url, "push", module, "--name", name)
		m := regexp.MustCompile(`sha256:([0-9a-f]{64})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("push %s printed no digest: %q", name, out)
		}
		return m[1]
	}
	hello := digest(module(t, "hello"), "hello:v1")
	sleep := digest(module(t, "sleep"), "sleep:v1")
	apply := func(what string, docs ...string) {
		t.Helper()
		if r := ctl(t, url, strings.NewReader(strings.Join(docs, "---\n")), "apply", "-f", "-"); r.code != 0 {
			t.Fatalf("apply %s: %s", what, r)
		}
	}
	docs := []string{fmt.Sprintf(fleetConfig, "config-v1"), fmt.Sprintf(fleetDaemonSet, hello, "ds-r1")}
	for _, s := range sites {
		for _, kind := range []string{"keep", "change", "del"} {
			docs = append(docs, fmt.Sprintf(fleetPod, s+"-"+kind, s, "hello@sha256:"+hello))
		}
	}
	apply("the fleet", docs...)

	// Everything runs: on each device its three pods and a daemon pod,
	// greeting with the ConfigMap's first value.
	var before map[string]*manifests.Pod
	eventually(t, 60*time.Second, func() error {
		before = fleetPods(t, url)
		if len(before) != 12 {
			return fmt.Errorf("%d pods, want 12", len(before))
		}
		for _, p := range before {
			if _, err := runningContainer(p); err != nil {
				return err
			}
		}
		for _, d := range devs {
			local := localPods(t, d.dir)
			if len(local) != 4 {
				return fmt.Errorf("%s runs %v, want 4 pods", d.node, names(local))
			}
			for name, dir := range local {
				if _, ok := saysSince(podLog(dir), time.Time{}, "config-v1 from "+d.node+" #"); !ok {
					return fmt.Errorf("%s: %s has not greeted yet", d.node, name)
				}
			}
		}
		return nil
	})
	oldDaemon := map[string]string{} // node → pod name
	for node, ps := range daemonPods(before) {
		if len(ps) != 1 {
			t.Fatalf("node %s has %d daemon pods", node, len(ps))
		}
		oldDaemon[node] = ps[0].Name
	}

	// Cut a (link down) and b (its route to the control plane removed).
	// b filters by reverse path (strict, as RHEL sets it; Debian and Ubuntu
	// set loose, which drops these packets too: there is no route back at
	// all), so it neither sends to nor hears from the control plane.
	ipCmd(t, "-n", a.ns, "link", "set", "eth0", "down")
	for _, k := range []string{"all", "eth0"} {
		key := "/proc/sys/net/ipv4/conf/" + k + "/rp_filter"
		if out, err := exec.Command("nsenter", "--net=/run/netns/"+b.ns, "--", "sh", "-c", "echo 1 > "+key).CombinedOutput(); err != nil {
			t.Fatalf("set %s in %s: %v: %s", key, b.ns, err, out)
		}
	}
	ipCmd(t, "-n", b.ns, "route", "del", l.subnet+".0/24", "dev", "eth0")
	cut := time.Now()

	// The fleet changes meanwhile.
	docs = []string{fmt.Sprintf(fleetConfig, "config-v2"), fmt.Sprintf(fleetDaemonSet, hello, "ds-r2")}
	for _, s := range sites {
		docs = append(docs,
			fmt.Sprintf(fleetPod, s+"-change", s, "sleep@sha256:"+sleep),
			fmt.Sprintf(fleetPod, s+"-add", s, "hello@sha256:"+hello))
	}
	apply("the changes", docs...)
	mustCtl(t, url, "delete", "pod", "a-del", "b-del", "c-del")
	changed := time.Now()

	// The control plane places them: the added pods on their devices, one
	// daemon pod of the new template per node.
	newDaemon := map[string]string{}
	eventually(t, 30*time.Second, func() error {
		pods := fleetPods(t, url)
		for _, s := range sites {
			if p := pods[s+"-add"]; p == nil || p.Spec.NodeName != "dev-"+s {
				return fmt.Errorf("%s-add not placed on dev-%s yet", s, s)
			}
			if p := pods[s+"-del"]; p != nil {
				return fmt.Errorf("%s-del still there", s)
			}
		}
		for _, d := range devs {
			ps := daemonPods(pods)[d.node]
			if len(ps) != 1 || daemonRevision(ps[0]) != "ds-r2" {
				return fmt.Errorf("daemon pods on %s: %d, want one of ds-r2", d.node, len(ps))
			}
			newDaemon[d.node] = ps[0].Name
		}
		return nil
	})

	// c converges at once: on the device, the new pods greet with the new
	// value, the changed one sleeps, the deleted and the replaced daemon
	// pod are gone.
	want := func(d *fleetDevice) map[string]bool {
		return map[string]bool{d.site + "-keep": true, d.site + "-change": true, d.site + "-add": true, newDaemon[d.node]: true}
	}
	var cDone time.Time
	eventually(t, 30*time.Second, func() error {
		if err := converged(t, c, want(c), newDaemon[c.node], cut); err != nil {
			return err
		}
		cDone = time.Now()
		return nil
	})
	t.Logf("connected device: converged %v after the changes", cDone.Sub(changed).Round(time.Millisecond))

	// The cut devices heard nothing: they run what they had.
	for _, d := range []*fleetDevice{a, b} {
		old := map[string]bool{d.site + "-keep": true, d.site + "-change": true, d.site + "-del": true, oldDaemon[d.node]: true}
		if got := localPods(t, d.dir); !sameSet(got, old) {
			t.Fatalf("%s (cut) runs %v, want %v", d.node, names(got), old)
		}
	}

	// a's agent restarts while cut: every pod it had runs again from its
	// local state, greeting with the ConfigMap value it remembered.
	a.agent.stop(t)
	restart := time.Now()
	a.agent = wasmAgentIn(t, a.ns, a.ip, url, a.node, a.dir, "site=a,fleet=on")
	var offlineUp time.Duration
	eventually(t, 30*time.Second, func() error {
		local := localPods(t, a.dir)
		if old := map[string]bool{"a-keep": true, "a-change": true, "a-del": true, oldDaemon[a.node]: true}; !sameSet(local, old) {
			t.Fatalf("dev-a restarted while cut runs %v, want %v", names(local), old)
		}
		for name, dir := range local {
			if _, ok := saysSince(podLog(dir), restart, "config-v1 from dev-a #1"); !ok {
				return fmt.Errorf("%s not running again since the agent restarted", name)
			}
		}
		offlineUp = time.Since(restart)
		return nil
	})
	if out := a.agent.out.String(); strings.Contains(out, "resync:") || strings.Contains(out, "reconnected") {
		t.Fatalf("agent of dev-a connected while cut:\n%s", out)
	}
	t.Logf("offline restart: all 4 pods of dev-a running %v after the agent started (no connection)", offlineUp.Round(time.Millisecond))

	// Heal both.
	ipCmd(t, "-n", a.ns, "link", "set", "eth0", "up")
	ipCmd(t, "-n", b.ns, "route", "add", l.subnet+".0/24", "dev", "eth0", "proto", "kernel", "scope", "link", "src", b.ip)
	healed := time.Now()
	t.Logf("cut for %v", healed.Sub(cut).Round(time.Millisecond))
	// Both polled together: each one's time is its own.
	caughtUp := map[*fleetDevice]time.Duration{}
	eventually(t, 30*time.Second, func() error {
		for _, d := range []*fleetDevice{a, b} {
			if _, ok := caughtUp[d]; ok {
				continue
			}
			if err := converged(t, d, want(d), newDaemon[d.node], healed); err != nil {
				return err
			}
			caughtUp[d] = time.Since(healed)
		}
		return nil
	})
	for _, d := range []*fleetDevice{a, b} {
		out := d.agent.out.String()
		m := resyncLine.FindStringSubmatch(out)
		if m == nil && d == b && !strings.Contains(out, "disconnected from the control plane") {
			// Its NATS connection outlived the cut (no keepalive fired):
			// TCP delivered what it missed, no reconnection, no resync.
			t.Logf("%s after heal (%v): caught up over its surviving connection, no resync", d.node, caughtUp[d].Round(time.Millisecond))
			continue
		}
		if m == nil {
			t.Fatalf("%s: no delta resync logged", d.node)
		}
		n, _ := strconv.Atoi(m[1])
		size, _ := strconv.Atoi(m[2])
		// Per device: the added, the changed and the new daemon pod put,
		// the deleted and the replaced daemon pod removed.
		if n < 3 || n > 5 || size <= 0 {
			t.Fatalf("%s: %s, want 3 to 5 changes", d.node, m[0])
		}
		t.Logf("%s after heal (%v): %s", d.node, caughtUp[d].Round(time.Millisecond), m[0])
	}

	// Nothing restarted that did not change, and every pod runs once: on
	// each device (one writer per pod log) and in the control plane's view
	// (one daemon pod per node, one container per pod).
	settle := time.Now()
	eventually(t, 30*time.Second, func() error {
		for _, d := range devs {
			if _, ok := saysSince(podLog(localPods(t, d.dir)[d.site+"-keep"]), settle.Add(1500*time.Millisecond), " from "+d.node+" #"); !ok {
				return fmt.Errorf("%s-keep has not written since %s", d.site, settle.Format(time.StampMilli))
			}
		}
		return nil
	})
	after := fleetPods(t, url)
	if len(after) != 12 {
		t.Fatalf("%d pods after heal, want 12: %v", len(after), after)
	}
	if dp := daemonPods(after); len(dp) != len(devs) {
		t.Fatalf("daemon pods on %d nodes after heal, want %d", len(dp), len(devs))
	}
	eventually(t, 10*time.Second, func() error {
		var ds manifests.DaemonSet
		if err := json.Unmarshal([]byte(mustCtl(t, url, "get", "daemonset", "fleet", "-o", "json")), &ds); err != nil {
			t.Fatalf("get daemonset fleet: %v", err)
		}
		if st := ds.Status; st.DesiredNumberScheduled != 3 || st.CurrentNumberScheduled != 3 || st.UpdatedNumberScheduled != 3 ||
			st.NumberReady != 3 || st.NumberMisscheduled != 0 {
			return fmt.Errorf("daemonset fleet status after heal: %+v", st)
		}
		return nil
	})
	for node, ps := range daemonPods(after) {
		if len(ps) != 1 || ps[0].Name != newDaemon[node] {
			t.Fatalf("daemon pods on %s after heal: %d (want only %s)", node, len(ps), newDaemon[node])
		}
	}
	for _, d := range devs {
		local := localPods(t, d.dir)
		if !sameSet(local, want(d)) {
			t.Fatalf("%s runs %v after heal, want %v", d.node, names(local), want(d))
		}
		for name, dir := range local {
			if err := singleWriter(podLog(dir), settle); err != nil {
				t.Fatalf("%s: pod %s: %v", d.node, name, err)
			}
			if _, err := runningContainer(after[name]); err != nil {
				t.Fatal(err)
			}
		}
		keep := d.site + "-keep"
		lines := podLog(local[keep])
		cs, _ := runningContainer(after[keep])
		switch d {
		case a:
			// Started twice: at first, and by the agent's restart.
			if n := helloStarts(lines, time.Time{}); n != 2 {
				t.Fatalf("%s: %d starts, want 2 (first, offline restart)", keep, n)
			}
			if !cs.State.Running.StartedAt.After(restart.Add(-time.Second)) {
				t.Fatalf("%s: started at %v, before the agent's restart at %v", keep, cs.State.Running.StartedAt, restart)
			}
		default:
			if n := helloStarts(lines, time.Time{}); n != 1 {
				t.Fatalf("%s: %d starts, want 1: restarted", keep, n)
			}
			old, _ := runningContainer(before[keep])
			if cs.ContainerID != old.ContainerID || !cs.State.Running.StartedAt.Equal(old.State.Running.StartedAt) {
				t.Fatalf("%s restarted: container %s started %v, was %s started %v", keep,
					cs.ContainerID, cs.State.Running.StartedAt, old.ContainerID, old.State.Running.StartedAt)
			}
		}
		// The kept pod still greets with the value it started with: a
		// ConfigMap change does not restart pods (as in Kubernetes).
		last := ""
		for _, l := range lines {
			if helloLine.MatchString(l.text) {
				last = l.text
			}
		}
		if !strings.HasPrefix(last, "config-v1 from "+d.node+" #") {
			t.Fatalf("%s now says %q", keep, last)
		}
	}
}

// converged checks a device against its pods after the changes: exactly
// the pods of want run (pod directories), the added pod and the new daemon
// pod greet with the new ConfigMap value since since, the changed pod runs
// its new image (sleeps) in a new container and no longer the old one.
func converged(t *testing.T, d *fleetDevice, want map[string]bool, daemon string, since time.Time) error {
	t.Helper()
	local := localPods(t, d.dir)
	if !sameSet(local, want) {
		return fmt.Errorf("%s runs %v, want %v", d.node, names(local), want)
	}
	if _, ok := saysSince(podLog(local[d.site+"-add"]), since, "config-v2 from "+d.node+" #"); !ok {
		return fmt.Errorf("%s-add has not greeted with config-v2", d.site)
	}
	if _, ok := saysSince(podLog(local[daemon]), since, "ds-r2 config-v2 from "+d.node+" #"); !ok {
		return fmt.Errorf("daemon pod %s has not greeted with ds-r2 config-v2", daemon)
	}
	lines := podLog(local[d.site+"-change"])
	if _, ok := saysSince(lines, since, "sleeping forever"); !ok {
		return fmt.Errorf("%s-change does not run its new image", d.site)
	}
	return nil
}

func sameSet(got map[string]string, want map[string]bool) bool {
	if len(got) != len(want) {
		return false
	}
	for k := range got {
		if !want[k] {
			return false
		}
	}
	return true
}
