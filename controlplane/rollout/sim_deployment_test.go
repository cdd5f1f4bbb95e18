package rollout_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/deployment"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

const webReplicas = 20

// webMinReady is replicas - maxUnavailable (25% of 20).
const webMinReady = webReplicas - 5

const webDeploymentYAML = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 20
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: "fake://run"}]
`

func webRolloutYAML(name, image, version, action string) string {
	return fmt.Sprintf(`
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: %s, namespace: default}
spec:
  targetRef: {kind: Deployment, name: web}
  template:
    metadata: {labels: {app: web}, annotations: {version: %q}}
    spec:
      containers: [{name: c, image: %q}]
  waves: [{count: 25%%}, {count: 50%%}, {}]
  healthGate: {readySeconds: 1, timeoutSeconds: 20}
  failurePolicy: {maxFailedNodes: 0, action: %s}
`, name, version, image, action)
}

// webSampler follows the web pods through a watch for the whole test.
// After every event it checks that the pods of the current rollout's
// template are no more than its current wave's partition (read after the
// event, so never an older, smaller one), and keeps the fewest ready pods
// (not terminating) seen.
type webSampler struct {
	mu         sync.Mutex
	rollout    string // the rollout being checked
	minReady   int
	violations []string
	samples    int
	cancel     context.CancelFunc
	done       chan struct{}
}

func startWebSampler(t *testing.T, ctx context.Context, cl *client.Client) *webSampler {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	s := &webSampler{minReady: 1 << 30, cancel: cancel, done: make(chan struct{})}
	list, _, err := cl.List(ctx, "pods", "default", "app=web")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := cl.Watch(ctx, "pods", "default", "app=web")
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]*manifests.Pod{}
	for len(pods) < len(list) {
		ev := <-ch
		pods[ev.Object.GetObjectMeta().Name] = ev.Object.(*manifests.Pod)
	}
	go func() {
		defer close(s.done)
		for ev := range ch {
			p := ev.Object.(*manifests.Pod)
			if ev.Type == client.Deleted {
				delete(pods, p.Name)
			} else {
				pods[p.Name] = p
			}
			ready := 0
			byHash := map[string]int{}
			for _, p := range pods {
				if manifests.IsPodReady(p) && p.DeletionTimestamp == nil {
					ready++
				}
				byHash[p.Labels[manifests.DefaultDeploymentUniqueLabelKey]]++
			}
			s.mu.Lock()
			name := s.rollout
			s.samples++
			s.minReady = min(s.minReady, ready)
			s.mu.Unlock()
			if name == "" {
				continue
			}
			o, err := cl.Get(ctx, "rollouts", "default", name)
			if err != nil {
				continue // ctx done at the end
			}
			ro := o.(*manifests.Rollout)
			i := int(ro.Status.CurrentWave)
			if (ro.Status.Phase != manifests.RolloutProgressing && ro.Status.Phase != manifests.RolloutPaused) || i >= len(ro.Status.Waves) {
				continue
			}
			if n, max := byHash[ro.Status.Revision], int(ro.Status.Waves[i].Partition); n > max {
				s.mu.Lock()
				s.violations = append(s.violations, fmt.Sprintf("rollout %s wave %d: %d new-template pods > partition %d", name, i+1, n, max))
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *webSampler) follow(name string) {
	s.mu.Lock()
	s.rollout = name
	s.mu.Unlock()
}

func (s *webSampler) finish() {
	s.cancel()
	<-s.done
}

// webConverged checks that the 20 web pods are Ready and all of the
// Deployment's current template.
func (f *fixture) webConverged() error {
	o, err := f.c.Client.Get(f.ctx, "deployments", "default", "web")
	if err != nil {
		return err
	}
	d := o.(*manifests.Deployment)
	list, _, err := f.c.Client.List(f.ctx, "pods", "default", "app=web")
	if err != nil {
		return err
	}
	n := 0
	for _, o := range list {
		p := o.(*manifests.Pod)
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Annotations["version"] != d.Spec.Template.Annotations["version"] {
			return fmt.Errorf("pod %s has version %q, want %q", p.Name, p.Annotations["version"], d.Spec.Template.Annotations["version"])
		}
		if !manifests.IsPodReady(p) {
			return fmt.Errorf("pod %s is not ready", p.Name)
		}
		n++
	}
	if n != webReplicas || d.Status.UpdatedReplicas != webReplicas || d.Status.AvailableReplicas != webReplicas || d.Status.Replicas != webReplicas {
		return fmt.Errorf("%d pods; deployment status %+v", n, d.Status)
	}
	return nil
}

// TestDeploymentRolloutOverFleet rolls a Deployment of 20 replicas over
// 10 simulated nodes in waves of 25%, 50% and the rest, checking all along
// that the new template never runs more replicas than the current wave
// allows and that ready replicas never drop below replicas-maxUnavailable:
// a crashing template is rolled back to the old one; a good one is paused
// by the user mid-way, resumed, and completes.
func TestDeploymentRolloutOverFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 10, HeartbeatInterval: 100 * time.Millisecond, NodeGrace: time.Second})
	f := &fixture{t: t, ctx: ctx, c: c}
	f.apply(webDeploymentYAML)
	controllertest.Eventually(t, 30*time.Second, f.webConverged)
	o, err := c.Client.Get(ctx, "deployments", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	original := o.(*manifests.Deployment)
	s := startWebSampler(t, ctx, c.Client)

	// 1. A crashing template fails wave 1: rolled back to the old one.
	s.follow("bad")
	f.apply(webRolloutYAML("bad", "fake://exit/1", "2", "Rollback"))
	ro := f.waitPhase("bad", manifests.RolloutRolledBack, 25*time.Second)
	if ro.Status.CurrentWave != 0 || ro.Status.Waves[0].Total != 5 || ro.Status.Waves[0].Failed == 0 {
		t.Fatalf("rolled back at wave %d, waves %v", ro.Status.CurrentWave, waveCounts(ro))
	}
	controllertest.Eventually(t, 25*time.Second, func() error {
		o, err := c.Client.Get(ctx, "deployments", "default", "web")
		if err != nil {
			return err
		}
		d := o.(*manifests.Deployment)
		if !deployment.EqualIgnoreHash(&d.Spec.Template, &original.Spec.Template) || !manifests.EqualJSON(d.Spec.Strategy, original.Spec.Strategy) {
			return fmt.Errorf("deployment template/strategy not restored")
		}
		if _, ok := d.Annotations[manifests.RolloutPartitionAnnotation]; ok {
			return fmt.Errorf("partition annotation left")
		}
		return f.webConverged()
	})

	// 2. A good template, paused by the user once wave 1 passed, then
	// resumed: completes.
	s.follow("good")
	f.apply(webRolloutYAML("good", "fake://run", "3", "Rollback"))
	controllertest.Eventually(t, 25*time.Second, func() error {
		if ro := f.rollout("good"); ro.Status.CurrentWave < 1 {
			return fmt.Errorf("good at wave %d (%s): %v", ro.Status.CurrentWave, ro.Status.Phase, waveCounts(ro))
		}
		return nil
	})
	f.setPaused("good", true, "")
	ro = f.waitPhase("good", manifests.RolloutPaused, 10*time.Second)
	if ro.Status.PauseReason != manifests.RolloutPausedByUser {
		t.Fatalf("pause reason %q (%s)", ro.Status.PauseReason, ro.Status.Message)
	}
	pausedAt := ro.Status.CurrentWave
	f.setPaused("good", false, time.Now().UTC().Format(time.RFC3339Nano))
	ro = f.waitPhase("good", manifests.RolloutCompleted, 30*time.Second)
	if pausedAt >= 3 {
		t.Errorf("paused after the last wave")
	}
	for _, w := range ro.Status.Waves {
		if w.Failed != 0 {
			t.Errorf("failed replicas: %v", waveCounts(ro))
		}
	}
	controllertest.Eventually(t, 25*time.Second, func() error {
		o, err := c.Client.Get(ctx, "deployments", "default", "web")
		if err != nil {
			return err
		}
		d := o.(*manifests.Deployment)
		if _, ok := d.Annotations[manifests.RolloutPartitionAnnotation]; ok || !manifests.EqualJSON(d.Spec.Strategy, original.Spec.Strategy) {
			return fmt.Errorf("partition or strategy left: %v %+v", d.Annotations, d.Spec.Strategy)
		}
		return f.webConverged()
	})
	s.finish()
	t.Logf("%d pod events sampled, fewest ready pods %d", s.samples, s.minReady)
	if len(s.violations) > 0 {
		t.Errorf("partition exceeded:\n%v", s.violations)
	}
	if s.minReady < webMinReady {
		t.Errorf("ready pods dropped to %d < replicas-maxUnavailable %d", s.minReady, webMinReady)
	}
}

// setPaused sets spec.paused of a rollout and, when resumedAt is set, the
// rollout.edge.io/resumed-at annotation, as edgectl rollout pause/resume do.
func (f *fixture) setPaused(name string, paused bool, resumedAt string) {
	f.t.Helper()
	controllertest.Eventually(f.t, 5*time.Second, func() error {
		ro := f.rollout(name)
		ro.Spec.Paused = paused
		if resumedAt != "" {
			if ro.Annotations == nil {
				ro.Annotations = map[string]string{}
			}
			ro.Annotations[manifests.RolloutResumedAtAnnotation] = resumedAt
		}
		_, err := f.c.Client.Update(f.ctx, ro)
		return err
	})
}
