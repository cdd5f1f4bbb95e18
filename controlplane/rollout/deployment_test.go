package rollout

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/daemonset"
	"github.com/edgeorch/edgeorch/controlplane/deployment"
	"github.com/edgeorch/edgeorch/manifests"
)

// The tests below play the Deployment and ReplicaSet controllers: they
// create the ReplicaSets and pods, and check what the Rollout controller
// asks of the Deployment (template, strategy, partition).

const daemonSetDoc = `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: probe, namespace: default}
spec:
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec: {containers: [{name: c, image: "fake://run"}]}
`

const dsRolloutDoc = `
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: probe-v2, namespace: default}
spec:
  targetRef: {kind: DaemonSet, name: probe}
  template:
    metadata: {labels: {app: probe}, annotations: {version: "2"}}
    spec: {containers: [{name: c, image: "fake://run"}]}
  waves: [{count: 2}, {}]
  healthGate: {readySeconds: 10, timeoutSeconds: 60}
  failurePolicy: {maxFailedNodes: 0, action: Pause}
`

func daemonsetHash(ds *manifests.DaemonSet) string { return daemonset.TemplateHash(&ds.Spec.Template) }

func (f *fixture) decode(doc string) manifests.Object {
	f.t.Helper()
	objs, err := manifests.Decode([]byte(doc))
	if err != nil {
		f.t.Fatal(err)
	}
	return objs[0]
}

func (f *fixture) web(replicas int32, strategy string) *manifests.Deployment {
	f.t.Helper()
	return f.create(f.decode(fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: %d
  strategy: {type: %s}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: "fake://run"}]}
`, replicas, strategy))).(*manifests.Deployment)
}

func (f *fixture) webRollout(name, version, action string, extra string) {
	f.t.Helper()
	f.create(f.decode(fmt.Sprintf(`
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: %s, namespace: default}
spec:
  targetRef: {kind: Deployment, name: web}
  template:
    metadata: {labels: {app: web}, annotations: {version: %q}}
    spec: {containers: [{name: c, image: "fake://run"}]}
  waves: [{count: 1}, {count: 50%%}, {}]
  healthGate: {readySeconds: 10, timeoutSeconds: 60}
  failurePolicy: {maxFailedNodes: 0, action: %s}
%s`, name, version, action, extra)))
	f.name = name
	f.waitRollouts(name)
}

// waitRollouts waits until the rollouts cache holds the named rollouts.
func (f *fixture) waitRollouts(names ...string) {
	f.t.Helper()
	controllertest.Eventually(f.t, 10*time.Second, func() error {
		for _, n := range names {
			if _, ok := f.c.rollouts.Get("default/" + n); !ok {
				return fmt.Errorf("rollout %s not cached", n)
			}
		}
		return nil
	})
}

// replicaSet creates d's ReplicaSet of template with its pods on nodes
// (ready, or crashing).
func (f *fixture) replicaSet(d *manifests.Deployment, tmpl manifests.PodTemplateSpec, nodes []string, ready, crash bool) *manifests.ReplicaSet {
	f.t.Helper()
	hash := deployment.ComputeHash(&tmpl, nil)
	name := "web-" + hash
	var rs *manifests.ReplicaSet
	if o, err := f.st.Get(f.ctx, "replicasets", "default", name); err == nil {
		rs = o.(*manifests.ReplicaSet)
	} else {
		ref, err := manifests.NewControllerRef(d)
		if err != nil {
			f.t.Fatal(err)
		}
		t := *manifests.DeepCopy(&manifests.ReplicaSet{Spec: manifests.ReplicaSetSpec{Template: tmpl}}).(*manifests.ReplicaSet)
		t.Spec.Template.Labels[manifests.DefaultDeploymentUniqueLabelKey] = hash
		rs = f.create(&manifests.ReplicaSet{
			ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default", OwnerReferences: []manifests.OwnerReference{ref},
				Labels: map[string]string{"app": "web", manifests.DefaultDeploymentUniqueLabelKey: hash}},
			Spec: manifests.ReplicaSetSpec{
				Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web", manifests.DefaultDeploymentUniqueLabelKey: hash}},
				Template: t.Spec.Template,
			},
		}).(*manifests.ReplicaSet)
	}
	ref, err := manifests.NewControllerRef(rs)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, node := range nodes {
		p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{
			Name: fmt.Sprintf("%s-%s", name, node), Namespace: "default", OwnerReferences: []manifests.OwnerReference{ref},
			Labels: rs.Spec.Template.Labels,
		}}
		p.Spec = rs.Spec.Template.Spec
		p.Spec.NodeName = node
		p.Status.Phase = manifests.PodRunning
		st := "False"
		if ready {
			st = manifests.ConditionTrue
		}
		p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: st, LastTransitionTime: f.c.now().Add(-time.Hour)}}
		if crash {
			p.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "c", RestartCount: 2}}
		}
		f.create(p)
	}
	return rs
}

func (f *fixture) webDeployment() *manifests.Deployment {
	f.t.Helper()
	o, err := f.st.Get(f.ctx, "deployments", "default", "web")
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.Deployment)
}

// partitioned checks that the Deployment holds the rollout's template
// under a RollingUpdate with partition p.
func (f *fixture) partitioned(p string) func(ro *manifests.Rollout) error {
	return func(ro *manifests.Rollout) error {
		d := f.webDeployment()
		if !deployment.EqualIgnoreHash(&d.Spec.Template, &ro.Spec.Template) {
			return fmt.Errorf("deployment template not the rollout's")
		}
		if d.Spec.Strategy.Type != manifests.RollingUpdateDeploymentStrategyType || d.Annotations[manifests.RolloutPartitionAnnotation] != p {
			return fmt.Errorf("deployment strategy %s partition %q, want RollingUpdate %q", d.Spec.Strategy.Type, d.Annotations[manifests.RolloutPartitionAnnotation], p)
		}
		return nil
	}
}

// waveCounts is updated, ready, failed, offline of each wave.
func waveCounts(ro *manifests.Rollout) string {
	var parts []string
	for _, w := range ro.Status.Waves {
		parts = append(parts, fmt.Sprintf("%du%dr%df%do", w.Updated, w.Ready, w.Failed, w.Offline))
	}
	return strings.Join(parts, " ")
}

func waveTotals(ro *manifests.Rollout) string {
	var parts []string
	for _, w := range ro.Status.Waves {
		parts = append(parts, fmt.Sprintf("%d/%d", w.Total, w.Partition))
	}
	return strings.Join(parts, " ")
}

// TestDeploymentWaves walks a Deployment rollout: replica steps of
// 1, 50% (2) and the rest (1) of 4 replicas, each raising the partition
// once the wave's new replicas passed the health gate; a replica on an
// offline node is waited for waitSeconds; completion removes the
// partition and restores the Deployment's Recreate strategy.
func TestDeploymentWaves(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.node(fmt.Sprintf("n%d", i), i != 3)
	}
	d := f.web(4, "Recreate")
	oldTmpl := d.Spec.Template
	f.replicaSet(d, oldTmpl, []string{"n0", "n1", "n2", "n3"}, true, false)
	f.webRollout("web-v2", "2", "Rollback", "  offlinePolicy: {waitSeconds: 30}\n")

	ro := f.syncUntil(f.partitioned("1"))
	if got := waveTotals(ro); got != "1/1 2/3 1/4" {
		t.Fatalf("plan (total/partition) %q, want 1/1 2/3 1/4", got)
	}
	if ro.Status.PreviousDeploymentStrategy == nil || ro.Status.PreviousDeploymentStrategy.Type != manifests.RecreateDeploymentStrategyType ||
		ro.Status.PreviousTemplate == nil || !deployment.EqualIgnoreHash(ro.Status.PreviousTemplate, &oldTmpl) {
		t.Fatalf("previous strategy %+v template %+v", ro.Status.PreviousDeploymentStrategy, ro.Status.PreviousTemplate)
	}
	if ro.Status.Revision != deployment.ComputeHash(&ro.Spec.Template, nil) {
		t.Errorf("revision %s", ro.Status.Revision)
	}

	// Wave 1: one new replica, Ready; the gate holds it 10s.
	d = f.webDeployment()
	f.replicaSet(d, ro.Spec.Template, []string{"n0"}, true, false)
	f.syncUntil(func(ro *manifests.Rollout) error {
		if w := ro.Status.Waves[0]; w.Updated != 1 || w.Ready != 0 {
			return fmt.Errorf("wave 1 %+v", w)
		}
		return phaseWave(manifests.RolloutProgressing, 0)(ro)
	})
	f.advance(11 * time.Second)
	f.syncUntil(phaseWave(manifests.RolloutProgressing, 1))
	f.syncUntil(f.partitioned("3"))

	// Wave 2: two more, one on an offline node: waited for, then skipped.
	f.replicaSet(d, ro.Spec.Template, []string{"n1", "n3"}, true, false)
	f.syncUntil(func(ro *manifests.Rollout) error {
		if w := ro.Status.Waves[1]; w.Updated != 2 || w.Offline != 1 {
			return fmt.Errorf("wave 2 %+v", w)
		}
		return nil
	})
	f.advance(11 * time.Second)
	ro = f.syncUntil(func(ro *manifests.Rollout) error {
		if w := ro.Status.Waves[1]; w.Ready != 1 {
			return fmt.Errorf("wave 2 %+v", w)
		}
		return nil
	})
	if ro.Status.CurrentWave != 1 {
		t.Fatalf("wave 2 passed before waitSeconds: %+v", ro.Status)
	}
	f.advance(20 * time.Second)
	f.syncUntil(phaseWave(manifests.RolloutProgressing, 2))
	f.syncUntil(f.partitioned("4"))

	// Wave 3, then completion.
	f.replicaSet(d, ro.Spec.Template, []string{"n4"}, true, false)
	f.syncUntil(func(ro *manifests.Rollout) error {
		if ro.Status.Waves[2].Updated != 1 {
			return fmt.Errorf("wave 3 %+v", ro.Status.Waves[2])
		}
		return nil
	})
	f.advance(11 * time.Second)
	ro = f.syncUntil(phaseWave(manifests.RolloutCompleted, 3))
	// Replicas are counted, not placed: ready ones fill the waves first.
	if got := waveCounts(ro); got != "1u1r0f0o 2u2r0f0o 1u0r0f1o" {
		t.Fatalf("waves %s", got)
	}
	f.syncUntil(func(ro *manifests.Rollout) error {
		d := f.webDeployment()
		if _, ok := d.Annotations[manifests.RolloutPartitionAnnotation]; ok || d.Spec.Strategy.Type != manifests.RecreateDeploymentStrategyType {
			return fmt.Errorf("deployment annotations %v strategy %s", d.Annotations, d.Spec.Strategy.Type)
		}
		if !deployment.EqualIgnoreHash(&d.Spec.Template, &ro.Spec.Template) {
			return fmt.Errorf("template not kept")
		}
		return nil
	})
}

// TestDeploymentRollbackPauseResume: a crashing replica rolls back
// (old template, strategy restored, partition removed); with action Pause
// it pauses with the partition kept, a resume accepts that failure and
// continues; a user pause holds the partition until cleared.
func TestDeploymentRollbackPauseResume(t *testing.T) {
	f := newFixture(t)
	for i := range 4 {
		f.node(fmt.Sprintf("n%d", i), true)
	}
	d := f.web(4, "RollingUpdate")
	oldTmpl := d.Spec.Template
	oldStrategy := d.Spec.Strategy
	f.replicaSet(d, oldTmpl, []string{"n0", "n1", "n2", "n3"}, true, false)

	f.webRollout("bad", "2", "Rollback", "")
	ro := f.syncUntil(f.partitioned("1"))
	f.replicaSet(f.webDeployment(), ro.Spec.Template, []string{"n0"}, false, true)
	ro = f.syncUntil(phaseWave(manifests.RolloutRolledBack, 0))
	if !strings.Contains(ro.Status.Message, "1 replicas failed") {
		t.Errorf("message %q", ro.Status.Message)
	}
	f.syncUntil(func(*manifests.Rollout) error {
		d := f.webDeployment()
		if !deployment.EqualIgnoreHash(&d.Spec.Template, &oldTmpl) || !manifests.EqualJSON(d.Spec.Strategy, oldStrategy) {
			return fmt.Errorf("deployment not rolled back: strategy %+v", d.Spec.Strategy)
		}
		if _, ok := d.Annotations[manifests.RolloutPartitionAnnotation]; ok {
			return fmt.Errorf("partition kept after rollback")
		}
		return nil
	})

	// Action Pause: the same failure pauses, the partition stays.
	f.webRollout("pausing", "3", "Pause", "")
	ro = f.syncUntil(f.partitioned("1"))
	f.replicaSet(f.webDeployment(), ro.Spec.Template, []string{"n1"}, false, true)
	ro = f.syncUntil(phaseWave(manifests.RolloutPaused, 0))
	if ro.Status.PauseReason != manifests.RolloutPausedByFailures {
		t.Fatalf("pause reason %q", ro.Status.PauseReason)
	}
	f.syncUntil(f.partitioned("1"))

	// Resume: the failure is accepted, wave 1 is done (failed), wave 2
	// starts.
	ro.Annotations = map[string]string{manifests.RolloutResumedAtAnnotation: "2026-01-01T00:01:00Z"}
	if _, err := f.st.Update(f.ctx, ro); err != nil {
		t.Fatal(err)
	}
	ro = f.syncUntil(phaseWave(manifests.RolloutProgressing, 1))
	if ro.Status.AcceptedFailures != 1 || ro.Status.ObservedResumedAt != "2026-01-01T00:01:00Z" {
		t.Fatalf("accepted %d observed %q", ro.Status.AcceptedFailures, ro.Status.ObservedResumedAt)
	}
	f.syncUntil(f.partitioned("3"))

	// User pause: held until spec.paused is cleared.
	ro.Spec.Paused = true
	if _, err := f.st.Update(f.ctx, ro); err != nil {
		t.Fatal(err)
	}
	ro = f.syncUntil(phaseWave(manifests.RolloutPaused, 1))
	if ro.Status.PauseReason != manifests.RolloutPausedByUser || !strings.Contains(ro.Status.Message, "paused by user") {
		t.Fatalf("pause %q %q", ro.Status.PauseReason, ro.Status.Message)
	}
	f.replicaSet(f.webDeployment(), ro.Spec.Template, []string{"n2", "n3"}, true, false)
	f.advance(time.Minute) // past the wave timeout: no failure while paused
	ro = f.syncUntil(func(ro *manifests.Rollout) error {
		if w := ro.Status.Waves[1]; w.Updated != 2 {
			return fmt.Errorf("wave 2 %+v", w)
		}
		return nil
	})
	if ro.Status.Phase != manifests.RolloutPaused || ro.Status.Waves[1].Failed != 0 {
		t.Fatalf("paused rollout moved: %s %+v", ro.Status.Phase, ro.Status.Waves[1])
	}
	ro.Spec.Paused = false
	if _, err := f.st.Update(f.ctx, ro); err != nil {
		t.Fatal(err)
	}
	f.syncUntil(phaseWave(manifests.RolloutProgressing, 1))
	f.advance(11 * time.Second)
	f.syncUntil(phaseWave(manifests.RolloutProgressing, 2))
	f.syncUntil(f.partitioned("4"))
}

// TestDaemonSetResumeAcceptsFailures: a DaemonSet rollout paused by its
// failure policy resumes on request, accepting the failed node, and
// pauses again when one more node fails.
func TestDaemonSetResumeAcceptsFailures(t *testing.T) {
	f := newFixture(t)
	for i := range 4 {
		f.node(fmt.Sprintf("n%d", i), true)
	}
	ds := f.create(f.decode(daemonSetDoc)).(*manifests.DaemonSet)
	oldHash := daemonsetHash(ds)
	for i := range 4 {
		f.pod(ds, fmt.Sprintf("n%d", i), oldHash, true, false)
	}
	f.create(f.decode(strings.Replace(dsRolloutDoc, "waves: [{count: 2}, {}]", "waves: [{count: 1}, {}]", 1)))
	f.waitRollouts("probe-v2")
	ro := f.syncUntil(func(ro *manifests.Rollout) error {
		if got := f.podsByNode(); len(got["n0"]) != 0 {
			return fmt.Errorf("pods %v", got)
		}
		return nil
	})
	f.pod(ds, "n0", ro.Status.Revision, false, true)
	ro = f.syncUntil(phaseWave(manifests.RolloutPaused, 0))
	if ro.Status.PauseReason != manifests.RolloutPausedByFailures {
		t.Fatalf("pause reason %q", ro.Status.PauseReason)
	}
	// Clearing nothing (spec.paused is false) does not resume it.
	f.syncUntil(phaseWave(manifests.RolloutPaused, 0))

	ro.Annotations = map[string]string{manifests.RolloutResumedAtAnnotation: "t1"}
	if _, err := f.st.Update(f.ctx, ro); err != nil {
		t.Fatal(err)
	}
	ro = f.syncUntil(phaseWave(manifests.RolloutProgressing, 1))
	if ro.Status.AcceptedFailures != 1 {
		t.Fatalf("accepted %d", ro.Status.AcceptedFailures)
	}
	f.syncUntil(func(*manifests.Rollout) error {
		if got := f.podsByNode(); len(got["n1"])+len(got["n2"])+len(got["n3"]) != 0 {
			return fmt.Errorf("pods %v", got)
		}
		return nil
	})
	f.pod(ds, "n1", ro.Status.Revision, false, true)
	ro = f.syncUntil(phaseWave(manifests.RolloutPaused, 1))
	if !strings.Contains(ro.Status.Message, "2 nodes failed the health gate (1 accepted on resume") {
		t.Fatalf("message %q", ro.Status.Message)
	}
}

// TestLaterRolloutOfTargetFails: two rollouts of one target that slipped
// past the API at once: the later one fails naming the other, the
// earlier one proceeds.
func TestLaterRolloutOfTargetFails(t *testing.T) {
	f := newFixture(t)
	f.node("n0", true)
	ds := f.create(f.decode(daemonSetDoc)).(*manifests.DaemonSet)
	f.pod(ds, "n0", daemonsetHash(ds), true, false)
	f.create(f.decode(dsRolloutDoc))
	f.create(f.decode(strings.Replace(strings.Replace(dsRolloutDoc, "name: probe-v2", "name: probe-v3", 1), `version: "2"`, `version: "3"`, 1)))
	f.waitRollouts("probe-v2", "probe-v3")
	f.name = "probe-v3"
	ro := f.syncUntil(phaseWave(manifests.RolloutFailed, 0))
	want := `rollout "probe-v3": daemonset "probe" is already being rolled out by rollout "probe-v2" (Pending); delete it or wait until it completes`
	if ro.Status.Message != want {
		t.Fatalf("message\n got %q\nwant %q", ro.Status.Message, want)
	}
	f.name = "probe-v2"
	f.syncUntil(phaseWave(manifests.RolloutProgressing, 0))
}
