package edgectl

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

// webDeployment is a Deployment whose rollouts take a few seconds: one
// pod at a time (maxSurge 1, maxUnavailable 0), each available after 1s.
func webDeployment(image, cause string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    kubernetes.io/change-cause: %q
spec:
  replicas: 3
  minReadySeconds: 1
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      runtimeClassName: fake
      containers:
      - name: web
        image: %q
`, cause, image)
}

func getDeployment(t *testing.T, c *sim.Cluster) *manifests.Deployment {
	t.Helper()
	obj, err := c.Client.Get(t.Context(), "deployments", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*manifests.Deployment)
}

// checkRolloutOutput checks rollout status output: progress lines, each
// different from the one before, then the success line.
func checkRolloutOutput(t *testing.T, out string, wantProgress bool) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != `deployment "web" successfully rolled out` {
		t.Errorf("rollout status ends with %q:\n%s", last, out)
	}
	for i, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, `Waiting for deployment "web" rollout to finish: `) && l != "Waiting for deployment spec update to be observed..." {
			t.Errorf("rollout status line %q:\n%s", l, out)
		}
		if i > 0 && l == lines[i-1] {
			t.Errorf("rollout status repeats %q", l)
		}
	}
	if wantProgress && len(lines) < 2 {
		t.Errorf("rollout status printed no progress:\n%s", out)
	}
}

func TestRolloutOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 3})
	ctl := ctlAt(t, c.URL)

	mustOK(t, ctl(webDeployment("fake://run", "v1"), "apply", "-f", "-"), "apply v1")
	checkRolloutOutput(t, mustOK(t, ctl("", "rollout", "status", "deployment/web", "--timeout", "30s"), "rollout status v1"), false)
	got := lines(mustOK(t, ctl("", "get", "deployments"), "get deployments"))
	if len(got) != 2 || strings.Join(got[1][:4], " ") != "web 3/3 3 3" {
		t.Errorf("get deployments after v1: %v", got)
	}

	// v2 rolls out one pod at a time; status follows it.
	mustOK(t, ctl(webDeployment("fake://sleep/1h", "v2"), "apply", "-f", "-"), "apply v2")
	out := mustOK(t, ctl("", "rollout", "status", "deploy", "web", "--timeout", "40s"), "rollout status v2")
	t.Logf("rollout status v2:\n%s", out)
	checkRolloutOutput(t, out, true)
	if !strings.Contains(out, "new replicas have been updated...") {
		t.Errorf("rollout status v2 shows no update progress:\n%s", out)
	}
	rsTable := lines(mustOK(t, ctl("", "get", "rs"), "get rs"))
	if len(rsTable) != 3 || strings.Join(rsTable[0], " ") != "NAME DESIRED CURRENT READY AGE" {
		t.Fatalf("get rs: %v", rsTable)
	}
	sizes := map[string]bool{}
	for _, r := range rsTable[1:] {
		sizes[strings.Join(r[1:4], " ")] = true
	}
	if !sizes["3 3 3"] || !sizes["0 0 0"] {
		t.Errorf("replicasets after v2 (want one 3 3 3, one 0 0 0): %v", rsTable)
	}
	hist := mustOK(t, ctl("", "rollout", "history", "deployment/web"), "history")
	if h := lines(hist); len(h) != 4 || strings.Join(h[2], " ") != "1 v1" || strings.Join(h[3], " ") != "2 v2" {
		t.Errorf("history:\n%s", hist)
	}
	rev1 := mustOK(t, ctl("", "rollout", "history", "deployment/web", "--revision", "1"), "history --revision 1")
	if !strings.Contains(rev1, "deployment.apps/web with revision #1") || !strings.Contains(rev1, "fake://run") {
		t.Errorf("history --revision 1:\n%s", rev1)
	}

	// Undo: back to v1's template, as revision 3.
	if out := mustOK(t, ctl("", "rollout", "undo", "deployment/web"), "undo"); out != "deployment.apps/web rolled back\n" {
		t.Errorf("undo printed %q", out)
	}
	checkRolloutOutput(t, mustOK(t, ctl("", "rollout", "status", "deployment/web", "--timeout", "40s"), "rollout status undo"), false)
	d := getDeployment(t, c)
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "fake://run" {
		t.Errorf("image after undo %q, want fake://run", img)
	}
	if _, ok := d.Spec.Template.Labels[manifests.DefaultDeploymentUniqueLabelKey]; ok {
		t.Errorf("undo copied the pod-template-hash label: %v", d.Spec.Template.Labels)
	}
	if rev := d.Annotations[manifests.RevisionAnnotation]; rev != "3" {
		t.Errorf("revision after undo %q, want 3", rev)
	}
	if out := mustOK(t, ctl("", "rollout", "undo", "deployment/web", "--to-revision", "3"), "undo to current"); !strings.Contains(out, "skipped rollback") {
		t.Errorf("undo to the current revision printed %q", out)
	}
	if r := ctl("", "rollout", "undo", "deployment/web", "--to-revision", "9"); r.code == 0 || !strings.Contains(r.stderr, "unable to find specified revision 9") {
		t.Errorf("undo to a missing revision: %+v", r)
	}

	// Scale, pause, resume.
	if out := mustOK(t, ctl("", "scale", "deployment/web", "--replicas", "1"), "scale"); out != "deployment.apps/web scaled\n" {
		t.Errorf("scale printed %q", out)
	}
	eventually(t, 20*time.Second, func() error {
		d := getDeployment(t, c)
		if *d.Spec.Replicas != 1 || d.Status.Replicas != 1 || d.Status.AvailableReplicas != 1 {
			return fmt.Errorf("after scale: spec %d, status %+v", *d.Spec.Replicas, d.Status)
		}
		return nil
	})
	if r := ctl("", "scale", "deployment/web", "--current-replicas", "5", "--replicas", "2"); r.code == 0 || !strings.Contains(r.stderr, "expected replicas to be 5, was 1") {
		t.Errorf("scale with a wrong precondition: %+v", r)
	}
	mustOK(t, ctl("", "rollout", "pause", "deployment/web"), "pause")
	if !getDeployment(t, c).Spec.Paused {
		t.Error("not paused")
	}
	if r := ctl("", "rollout", "pause", "deployment/web"); r.code == 0 || !strings.Contains(r.stderr, `deployments.apps "web" is already paused`) {
		t.Errorf("second pause: %+v", r)
	}
	if r := ctl("", "rollout", "undo", "deployment/web"); r.code == 0 || !strings.Contains(r.stderr, "cannot rollback a paused deployment") {
		t.Errorf("undo while paused: %+v", r)
	}
	if out := mustOK(t, ctl("", "rollout", "resume", "deployment/web"), "resume"); out != "deployment.apps/web resumed\n" {
		t.Errorf("resume printed %q", out)
	}
	if getDeployment(t, c).Spec.Paused {
		t.Error("still paused")
	}

	// Orphan: the Deployment goes, its ReplicaSets and pod stay, unowned.
	if out := mustOK(t, ctl("", "delete", "deployment", "web", "--cascade=orphan"), "delete orphan"); out != "deployment.apps \"web\" deleted\n" {
		t.Errorf("delete printed %q", out)
	}
	eventually(t, 20*time.Second, func() error {
		if _, err := c.Client.Get(ctx, "deployments", "default", "web"); !client.IsNotFound(err) {
			return fmt.Errorf("deployment still there: %v", err)
		}
		sets, _, err := c.Client.List(ctx, "replicasets", "default", "")
		if err != nil {
			return err
		}
		if len(sets) != 2 {
			return fmt.Errorf("%d replicasets left, want 2", len(sets))
		}
		for _, rs := range sets {
			if ref := manifests.GetControllerOf(rs); ref != nil {
				return fmt.Errorf("replicaset %s still owned by %s", rs.GetObjectMeta().Name, ref.Name)
			}
		}
		return nil
	})
	pods, _, err := c.Client.List(ctx, "pods", "default", "app=web")
	if err != nil || len(pods) != 1 {
		t.Fatalf("pods after an orphaning delete: %d, %v; want 1", len(pods), err)
	}
	// Background (the default): deleting the ReplicaSets takes their pods.
	mustOK(t, ctl("", "delete", "rs", "--all"), "delete rs")
	eventually(t, 20*time.Second, func() error {
		pods, _, err := c.Client.List(ctx, "pods", "default", "app=web")
		if err != nil {
			return err
		}
		if len(pods) != 0 {
			return fmt.Errorf("%d pods left", len(pods))
		}
		return nil
	})
}

func TestRolloutStatusTimesOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 1})
	ctl := ctlAt(t, c.URL)
	// No node has the handler: the pods stay Pending and the rollout waits.
	m := strings.Replace(webDeployment("fake://run", "v1"), "runtimeClassName: fake", "runtimeClassName: gvisor", 1)
	mustOK(t, ctl(m, "apply", "-f", "-"), "apply")
	start := time.Now()
	r := ctl("", "rollout", "status", "deployment/web", "--timeout", "1s")
	if r.code != 1 || !strings.Contains(r.stderr, "timed out waiting for the condition") {
		t.Errorf("rollout status of a stuck deployment: %+v", r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("--timeout 1s took %v", d)
	}
	if !strings.Contains(r.stdout, "Waiting for deployment") {
		t.Errorf("no progress line before the timeout: %q", r.stdout)
	}
}

func probeDaemonSet(image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: probe
spec:
  selector:
    matchLabels: {app: probe}
  template:
    metadata:
      labels: {app: probe}
    spec:
      nodeSelector: {site: north}
      runtimeClassName: fake
      containers:
      - name: probe
        image: %q
`, image)
}

func TestDaemonSetRolloutOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 3, Labels: func(i int) map[string]string {
		if i < 2 {
			return map[string]string{"site": "north"}
		}
		return map[string]string{"site": "south"}
	}})
	ctl := ctlAt(t, c.URL)
	done := `daemon set "probe" successfully rolled out`

	mustOK(t, ctl(probeDaemonSet("fake://run"), "apply", "-f", "-"), "apply")
	if out := mustOK(t, ctl("", "rollout", "status", "ds/probe", "--timeout", "30s"), "status"); !strings.HasSuffix(out, done+"\n") {
		t.Errorf("rollout status:\n%s", out)
	}
	got := lines(mustOK(t, ctl("", "get", "daemonsets"), "get ds"))
	if len(got) != 2 || strings.Join(got[0], " ") != "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE" ||
		strings.Join(got[1][:7], " ") != "probe 2 2 2 2 2 site=north" {
		t.Errorf("get ds: %v", got)
	}

	mustOK(t, ctl(probeDaemonSet("fake://sleep/1h"), "apply", "-f", "-"), "apply v2")
	out := mustOK(t, ctl("", "rollout", "status", "daemonset/probe", "--timeout", "30s"), "status v2")
	if !strings.HasSuffix(out, done+"\n") {
		t.Errorf("rollout status v2:\n%s", out)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, done+"\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, `Waiting for daemon set "probe" rollout to finish: `) && l != "Waiting for daemon set spec update to be observed..." {
			t.Errorf("rollout status v2 line %q", l)
		}
	}

	if out := mustOK(t, ctl("", "rollout", "restart", "daemonset/probe"), "restart"); out != "daemonset.apps/probe restarted\n" {
		t.Errorf("restart printed %q", out)
	}
	obj, err := c.Client.Get(ctx, "daemonsets", "default", "probe")
	if err != nil {
		t.Fatal(err)
	}
	if obj.(*manifests.DaemonSet).Spec.Template.Annotations[restartedAtAnnotation] == "" {
		t.Error("restart set no restartedAt annotation")
	}
	if out := mustOK(t, ctl("", "rollout", "status", "daemonset/probe", "--timeout", "30s"), "status restart"); !strings.HasSuffix(out, done+"\n") {
		t.Errorf("rollout status after restart:\n%s", out)
	}

	// Foreground: the pods go, then the DaemonSet.
	if out := mustOK(t, ctl("", "delete", "ds", "probe", "--cascade=foreground"), "delete"); out != "daemonset.apps \"probe\" deleted\n" {
		t.Errorf("delete printed %q", out)
	}
	eventually(t, 20*time.Second, func() error {
		pods, _, err := c.Client.List(ctx, "pods", "default", "app=probe")
		if err != nil {
			return err
		}
		_, err = c.Client.Get(ctx, "daemonsets", "default", "probe")
		if len(pods) != 0 || !client.IsNotFound(err) {
			return fmt.Errorf("%d pods left, daemonset: %v", len(pods), err)
		}
		return nil
	})
}
