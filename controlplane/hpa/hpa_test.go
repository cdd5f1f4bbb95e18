package hpa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// env is a real NATS server with the store, the API server (which takes
// the fake agents' usage reports through the real report path into the
// edge-usage bucket) and a controller over fixture caches, driven by an
// injected clock.
type env struct {
	t    testing.TB
	ctx  context.Context
	e    *controllertest.Env
	hpas controllertest.Cache
	pods controllertest.Cache
	rec  *controllertest.Recorder
	c    *Controller

	mu  sync.Mutex
	now time.Time
}

func newEnv(t testing.TB) *env {
	t.Helper()
	controllertest.QuietLogs(t)
	e := controllertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	srv := api.New(e.Store, e.NC, api.Options{})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	v := &env{t: t, ctx: ctx, e: e, rec: &controllertest.Recorder{}, now: time.Now()}
	v.c = New(e.Store, &v.hpas, &v.pods, e.Buckets.Usage, v.rec, Options{Now: v.clock})
	return v
}

func (v *env) clock() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

func (v *env) advance(d time.Duration) {
	v.mu.Lock()
	v.now = v.now.Add(d)
	v.mu.Unlock()
}

// deployment creates Deployment name with replicas, selecting app=name,
// whose pods request 100m CPU and 100Mi memory.
func (v *env) deployment(name string, replicas int32) {
	v.t.Helper()
	d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"}}
	d.Spec.Replicas = &replicas
	d.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": name}}
	d.Spec.Template.Labels = map[string]string{"app": name}
	d.Spec.Template.Spec.Containers = []manifests.Container{{Name: "web", Image: "fake://run",
		Resources: manifests.ResourceRequirements{Requests: manifests.ResourceList{"cpu": "100m", "memory": "100Mi"}}}}
	manifests.Default(d)
	if _, err := v.e.Store.Create(v.ctx, d); err != nil {
		v.t.Fatal(err)
	}
}

// pod creates a running, ready pod of app on node, started 10 minutes
// ago, and returns its UID. requests false leaves out the requests.
func (v *env) pod(app, name, node string, requests bool) string {
	v.t.Helper()
	p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": app}}}
	c := manifests.Container{Name: "web", Image: "fake://run"}
	if requests {
		c.Resources.Requests = manifests.ResourceList{"cpu": "100m", "memory": "100Mi"}
	}
	p.Spec.Containers = []manifests.Container{c}
	p.Spec.NodeName = node
	start := time.Now().Add(-10 * time.Minute)
	p.Status.Phase = manifests.PodRunning
	p.Status.StartTime = &start
	p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: manifests.ConditionTrue, LastTransitionTime: start.Add(5 * time.Second)}}
	created, err := v.e.Store.Create(v.ctx, p)
	if err != nil {
		v.t.Fatal(err)
	}
	return created.GetObjectMeta().UID
}

// figures is the usage of one pod in a report.
type figures struct {
	name, uid, cpu, memory string
}

// report sends node's usage report as its agent does (client.ReportUsage
// on the node-scoped subject; the API server stores it).
func (v *env) report(node string, pods ...figures) {
	v.t.Helper()
	r := client.UsageReport{Node: client.NodeMetrics{Window: "15s", Usage: manifests.ResourceList{"cpu": "500m", "memory": "200Mi"}}}
	r.Node.Metadata.Name = node
	for _, f := range pods {
		u := manifests.ResourceList{}
		if f.cpu != "" {
			u["cpu"] = manifests.Quantity(f.cpu)
		}
		if f.memory != "" {
			u["memory"] = manifests.Quantity(f.memory)
		}
		pm := client.PodMetrics{Window: "15s", Containers: []client.ContainerMetrics{{Name: "web", Usage: u}}}
		pm.Metadata = manifests.ObjectMeta{Namespace: "default", Name: f.name, UID: f.uid}
		r.Pods = append(r.Pods, pm)
	}
	if err := client.New(v.e.NC, client.AsNode(node)).ReportUsage(v.ctx, r); err != nil {
		v.t.Fatalf("report usage of %s: %v", node, err)
	}
}

// hpa creates an HPA on Deployment target from its spec (defaulted and
// validated as an apply would).
func (v *env) hpa(name, target string, minR, maxR int32, metrics []manifests.MetricSpec, b *manifests.HorizontalPodAutoscalerBehavior) {
	v.t.Helper()
	h := &manifests.HorizontalPodAutoscaler{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"}}
	h.Spec.ScaleTargetRef = manifests.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target}
	h.Spec.MinReplicas = &minR
	h.Spec.MaxReplicas = maxR
	h.Spec.Metrics = metrics
	h.Spec.Behavior = b
	manifests.Default(h)
	if err := manifests.Validate(h); err != nil {
		v.t.Fatal(err)
	}
	if _, err := v.e.Store.Create(v.ctx, h); err != nil {
		v.t.Fatal(err)
	}
}

func cpuUtil(pct int32) []manifests.MetricSpec {
	return []manifests.MetricSpec{{Type: "Resource", Resource: &manifests.ResourceMetricSource{Name: "cpu",
		Target: manifests.MetricTarget{Type: "Utilization", AverageUtilization: &pct}}}}
}

// sync loads the caches from the store and syncs the HPA once.
func (v *env) sync(name string) {
	v.t.Helper()
	v.hpas.Load(v.t, v.e.Store, "horizontalpodautoscalers")
	v.pods.Load(v.t, v.e.Store, "pods")
	if err := v.c.Sync(v.ctx, "default/"+name); err != nil {
		v.t.Fatalf("sync %s: %v", name, err)
	}
}

func (v *env) replicas(name string) int32 {
	v.t.Helper()
	obj, err := v.e.Store.Get(v.ctx, "deployments", "default", name)
	if err != nil {
		v.t.Fatal(err)
	}
	return *obj.(*manifests.Deployment).Spec.Replicas
}

func (v *env) status(name string) *manifests.HorizontalPodAutoscaler {
	v.t.Helper()
	obj, err := v.e.Store.Get(v.ctx, "horizontalpodautoscalers", "default", name)
	if err != nil {
		v.t.Fatal(err)
	}
	return obj.(*manifests.HorizontalPodAutoscaler)
}

func (v *env) wantCondition(name, typ, status, reason, msg string) {
	v.t.Helper()
	h := v.status(name)
	c := manifests.HPACondition(h, typ)
	if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, msg) {
		v.t.Fatalf("condition %s: %+v, want %s/%s %q (all: %+v)", typ, c, status, reason, msg, h.Status.Conditions)
	}
}

// TestScaleUpOnHighCPU: two pods at 90 % of their CPU request against a
// 50 % target become four (ceil(2 * 90 / 50)), with a SuccessfulRescale
// event and the status Kubernetes writes.
func TestScaleUpOnHighCPU(t *testing.T) {
	v := newEnv(t)
	v.deployment("web", 2)
	a, b := v.pod("web", "web-a", "n1", true), v.pod("web", "web-b", "n2", true)
	v.pod("other", "other-a", "n1", true) // not selected
	v.report("n1", figures{"web-a", a, "90m", "50Mi"}, figures{"other-a", "x", "1", "1Gi"})
	v.report("n2", figures{"web-b", b, "90m", "50Mi"})
	v.hpa("web", "web", 1, 10, cpuUtil(50), nil)

	v.sync("web")
	if got := v.replicas("web"); got != 4 {
		t.Fatalf("replicas %d, want 4", got)
	}
	if ev := v.rec.Find(EventSuccessfulRescale); ev != "SuccessfulRescale: New size: 4; reason: cpu resource utilization (percentage of request) above target" {
		t.Fatalf("event %q", ev)
	}
	h := v.status("web")
	s := h.Status
	if s.CurrentReplicas != 2 || s.DesiredReplicas != 4 || s.LastScaleTime == nil || len(s.CurrentMetrics) != 1 {
		t.Fatalf("status %+v", s)
	}
	if cur := s.CurrentMetrics[0].Resource.Current; *cur.AverageUtilization != 90 || *cur.AverageValue != "90m" {
		t.Fatalf("current metric %+v", cur)
	}
	v.wantCondition("web", "AbleToScale", "True", "SucceededRescale", "to 4")
	v.wantCondition("web", "ScalingActive", "True", "ValidMetricFound", "cpu resource utilization")
	v.wantCondition("web", "ScalingLimited", "False", "DesiredWithinRange", "")
}

// TestScaleDownAfterWindow: low usage scales down only once the 5-minute
// window (injected clock) holds no higher recommendation, and not below
// minReplicas.
func TestScaleDownAfterWindow(t *testing.T) {
	v := newEnv(t)
	v.deployment("web", 4)
	var figs []figures
	for i := range 4 {
		name := fmt.Sprintf("web-%d", i)
		figs = append(figs, figures{name, v.pod("web", name, "n1", true), "10m", "10Mi"})
	}
	v.report("n1", figs...)
	v.hpa("web", "web", 2, 10, cpuUtil(50), nil)

	v.sync("web")
	if got := v.replicas("web"); got != 4 {
		t.Fatalf("scaled down at once to %d", got)
	}
	v.wantCondition("web", "AbleToScale", "True", "ScaleDownStabilized", "recent recommendations were higher")
	if d := v.status("web").Status.DesiredReplicas; d != 4 {
		t.Fatalf("desiredReplicas %d during the window", d)
	}
	v.advance(4 * time.Minute)
	v.sync("web")
	if got := v.replicas("web"); got != 4 {
		t.Fatalf("scaled down to %d within the window", got)
	}
	v.advance(61 * time.Second)
	v.sync("web")
	if got := v.replicas("web"); got != 2 {
		t.Fatalf("replicas %d after the window, want minReplicas 2", got)
	}
	v.wantCondition("web", "ScalingLimited", "True", "TooFewReplicas", "less than the minimum")
	if ev := v.rec.Find(EventSuccessfulRescale); ev != "SuccessfulRescale: New size: 2; reason: All metrics below target" {
		t.Fatalf("event %q", ev)
	}
}

// TestNoChangeWithinTolerance: 54 % against 50 % is within 10 %.
func TestNoChangeWithinTolerance(t *testing.T) {
	v := newEnv(t)
	v.deployment("web", 2)
	a, b := v.pod("web", "web-a", "n1", true), v.pod("web", "web-b", "n1", true)
	v.report("n1", figures{"web-a", a, "54m", ""}, figures{"web-b", b, "54m", ""})
	v.hpa("web", "web", 1, 10, cpuUtil(50), nil)
	v.sync("web")
	if got := v.replicas("web"); got != 2 {
		t.Fatalf("replicas %d, want 2", got)
	}
	if v.rec.Has(EventSuccessfulRescale) {
		t.Fatal("rescaled within the tolerance")
	}
	s := v.status("web").Status
	if s.DesiredReplicas != 2 || s.LastScaleTime != nil || *s.CurrentMetrics[0].Resource.Current.AverageUtilization != 54 {
		t.Fatalf("status %+v", s)
	}
	v.wantCondition("web", "ScalingActive", "True", "ValidMetricFound", "")
}

// TestMinMaxAndPolicies: a scale-up is held to the policy (1 pod per
// minute), then to maxReplicas; a target outside [min, max] is brought
// back at once; selectPolicy Disabled never scales down.
func TestMinMaxAndPolicies(t *testing.T) {
	v := newEnv(t)
	v.deployment("web", 2)
	a, b := v.pod("web", "web-a", "n1", true), v.pod("web", "web-b", "n1", true)
	v.report("n1", figures{"web-a", a, "100m", ""}, figures{"web-b", b, "100m", ""})
	disabled := manifests.DisabledPolicySelect
	v.hpa("web", "web", 1, 4, cpuUtil(10), &manifests.HorizontalPodAutoscalerBehavior{
		ScaleUp:   &manifests.HPAScalingRules{Policies: []manifests.HPAScalingPolicy{{Type: "Pods", Value: 1, PeriodSeconds: 60}}},
		ScaleDown: &manifests.HPAScalingRules{SelectPolicy: &disabled},
	})
	v.sync("web")
	if got := v.replicas("web"); got != 3 {
		t.Fatalf("replicas %d, want 3 (one pod per minute)", got)
	}
	v.wantCondition("web", "ScalingLimited", "True", "ScaleUpLimit", "faster than the maximum scale rate")
	v.advance(15 * time.Second)
	v.sync("web")
	if got := v.replicas("web"); got != 3 {
		t.Fatalf("replicas %d within the policy period, want 3", got)
	}
	v.advance(50 * time.Second)
	v.sync("web")
	if got := v.replicas("web"); got != 4 {
		t.Fatalf("replicas %d after the policy period, want 4", got)
	}
	v.advance(61 * time.Second)
	v.sync("web")
	if got := v.replicas("web"); got != 4 {
		t.Fatalf("replicas %d, want maxReplicas 4", got)
	}
	v.wantCondition("web", "ScalingLimited", "True", "TooManyReplicas", "more than the maximum")

	// Idle: scale-down is disabled.
	v.report("n1", figures{"web-a", a, "1m", ""}, figures{"web-b", b, "1m", ""})
	v.advance(time.Hour)
	v.sync("web")
	if got := v.replicas("web"); got != 4 {
		t.Fatalf("replicas %d with scale-down disabled, want 4", got)
	}

	// Someone scales the target beyond maxReplicas: brought back at once.
	v.setReplicas("web", 9)
	v.rec = &controllertest.Recorder{}
	v.c.rec = v.rec
	v.sync("web")
	if got := v.replicas("web"); got != 4 {
		t.Fatalf("replicas %d, want maxReplicas 4", got)
	}
	if ev := v.rec.Find(EventSuccessfulRescale); ev != "SuccessfulRescale: New size: 4; reason: Current number of replicas above Spec.MaxReplicas" {
		t.Fatalf("event %q", ev)
	}
}

func (v *env) setReplicas(name string, n int32) {
	v.t.Helper()
	obj, err := v.e.Store.Get(v.ctx, "deployments", "default", name)
	if err != nil {
		v.t.Fatal(err)
	}
	d := obj.(*manifests.Deployment)
	d.Spec.Replicas = &n
	if _, err := v.e.Store.Update(v.ctx, d); err != nil {
		v.t.Fatal(err)
	}
}

// TestBelowMin: a target with fewer replicas than minReplicas is raised.
func TestBelowMin(t *testing.T) {
	v := newEnv(t)
	v.deployment("web", 1)
	v.hpa("web", "web", 3, 5, cpuUtil(50), nil)
	v.sync("web") // no pods, no usage: the bounds apply before the metrics
	if got := v.replicas("web"); got != 3 {
		t.Fatalf("replicas %d, want minReplicas 3", got)
	}
	if ev := v.rec.Find(EventSuccessfulRescale); ev != "SuccessfulRescale: New size: 3; reason: Current number of replicas below Spec.MinReplicas" {
		t.Fatalf("event %q", ev)
	}
}

// TestMemoryTarget: memory by average value (150Mi per pod against
// 100Mi: 3 pods) and by utilization of the request.
func TestMemoryTarget(t *testing.T) {
	v := newEnv(t)
	v.deployment("web", 2)
	v.deployment("api", 2)
	a, b := v.pod("web", "web-a", "n1", true), v.pod("web", "web-b", "n1", true)
	c, d := v.pod("api", "api-a", "n1", true), v.pod("api", "api-b", "n1", true)
	v.report("n1", figures{"web-a", a, "", "150Mi"}, figures{"web-b", b, "", "150Mi"},
		figures{"api-a", c, "", "90Mi"}, figures{"api-b", d, "", "90Mi"})
	avg := manifests.Quantity("100Mi")
	v.hpa("web", "web", 1, 10, []manifests.MetricSpec{{Type: "Resource", Resource: &manifests.ResourceMetricSource{Name: "memory",
		Target: manifests.MetricTarget{Type: "AverageValue", AverageValue: &avg}}}}, nil)
	pct := int32(30)
	v.hpa("api", "api", 1, 10, []manifests.MetricSpec{{Type: "Resource", Resource: &manifests.ResourceMetricSource{Name: "memory",
		Target: manifests.MetricTarget{Type: "Utilization", AverageUtilization: &pct}}}}, nil)
	v.sync("web")
	v.sync("api")
	if got := v.replicas("web"); got != 3 {
		t.Fatalf("web: replicas %d, want 3", got)
	}
	if got := v.replicas("api"); got != 6 { // 90 % of the request against 30 %
		t.Fatalf("api: replicas %d, want 6", got)
	}
	if cur := v.status("web").Status.CurrentMetrics[0].Resource.Current; cur.AverageValue == nil || *cur.AverageValue != "150Mi" || cur.AverageUtilization != nil {
		t.Fatalf("web: current metric %+v", cur)
	}
	if ev := v.rec.Find(EventSuccessfulRescale); !strings.Contains(ev, "memory resource above target") {
		t.Fatalf("event %q", ev)
	}
}

// TestMissingMetrics: without usage figures (no report, a wasm pod
// without a CPU figure, pods without a CPU request) the HPA does not
// scale and says why in ScalingActive, as Kubernetes does.
func TestMissingMetrics(t *testing.T) {
	v := newEnv(t)
	v.deployment("web", 2)
	a, b := v.pod("web", "web-a", "n1", true), v.pod("web", "web-b", "n1", true)
	v.hpa("web", "web", 1, 10, cpuUtil(50), nil)

	v.sync("web") // nothing reported yet
	if got := v.replicas("web"); got != 2 {
		t.Fatalf("replicas %d", got)
	}
	v.wantCondition("web", "ScalingActive", "False", "FailedGetResourceMetric", "the HPA was unable to compute the replica count: failed to get cpu usage: unable to get metrics for resource cpu: no metrics returned from resource metrics API")
	v.wantCondition("web", "AbleToScale", "True", "SucceededGetScale", "")
	if !v.rec.Has(EventFailedComputeMetricsReplicas) || !v.rec.Has(EventFailedGetResourceMetric) {
		t.Fatalf("events %v", v.rec.Reasons())
	}
	if s := v.status("web").Status; s.CurrentReplicas != 2 {
		t.Fatalf("status %+v", s)
	}

	// Memory only (a wasm module: no CPU figure): still no CPU metric.
	v.report("n1", figures{"web-a", a, "", "10Mi"}, figures{"web-b", b, "", "10Mi"})
	v.sync("web")
	v.wantCondition("web", "ScalingActive", "False", "FailedGetResourceMetric", "no metrics returned")

	// A CPU figure but no CPU request: utilization is undefined.
	v.deployment("noreq", 1)
	c := v.pod("noreq", "noreq-a", "n2", false)
	v.report("n2", figures{"noreq-a", c, "500m", "10Mi"})
	v.hpa("noreq", "noreq", 1, 10, cpuUtil(50), nil)
	v.sync("noreq")
	if got := v.replicas("noreq"); got != 1 {
		t.Fatalf("noreq: replicas %d", got)
	}
	v.wantCondition("noreq", "ScalingActive", "False", "FailedGetResourceMetric", "missing request for cpu in container web of Pod noreq-a")

	// A report for a pod with another UID (recreated pod) is not used.
	v.deployment("moved", 1)
	v.pod("moved", "moved-a", "n3", true)
	v.report("n3", figures{"moved-a", "old-uid", "500m", "10Mi"})
	v.hpa("moved", "moved", 1, 10, cpuUtil(50), nil)
	v.sync("moved")
	v.wantCondition("moved", "ScalingActive", "False", "FailedGetResourceMetric", "no metrics returned")
}

// TestTargetMissing: a target that does not exist is a condition.
func TestTargetMissing(t *testing.T) {
	v := newEnv(t)
	v.hpa("web", "nope", 1, 3, cpuUtil(50), nil)
	v.sync("web")
	v.wantCondition("web", "AbleToScale", "False", "FailedGetScale", `deployments "nope" not found`)
	if !v.rec.Has(EventFailedGetScale) {
		t.Fatalf("events %v", v.rec.Reasons())
	}
}

// TestRun: the controller on real informers scales on its sync period.
func TestRun(t *testing.T) {
	v := newEnv(t)
	v.deployment("web", 1)
	a := v.pod("web", "web-a", "n1", true)
	v.report("n1", figures{"web-a", a, "200m", ""})
	v.hpa("web", "web", 1, 5, cpuUtil(50), nil)

	hpas := controller.NewInformer(v.e.Store, "horizontalpodautoscalers")
	pods := controller.NewInformer(v.e.Store, "pods")
	c := New(v.e.Store, hpas, pods, v.e.Buckets.Usage, v.rec, Options{SyncPeriod: 50 * time.Millisecond})
	hpas.AddHandler(c.HPAChanged)
	ctx, cancel := context.WithCancel(v.ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, run := range []func(context.Context) error{hpas.Run, pods.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if hpas.WaitForSync(ctx) == nil && pods.WaitForSync(ctx) == nil {
			c.Run(ctx, 1)
		}
	}()
	controllertest.Eventually(t, 10*time.Second, func() error {
		if got := v.replicas("web"); got != 4 {
			return fmt.Errorf("replicas %d, want 4", got)
		}
		if s := v.status("web").Status; s.DesiredReplicas != 4 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}

// TestManyNodesReadByWatch: past a few nodes the reports are read with one
// watch of the bucket instead of a get each; the result is the same.
func TestManyNodesReadByWatch(t *testing.T) {
	v := newEnv(t)
	v.c.getMax = 1
	v.deployment("web", 3)
	for i := range 3 {
		node, name := fmt.Sprintf("n%d", i), fmt.Sprintf("web-%d", i)
		v.report(node, figures{name, v.pod("web", name, node, true), "90m", ""})
	}
	v.report("idle", figures{"other", "x", "1", ""})
	v.hpa("web", "web", 1, 10, cpuUtil(50), nil)
	v.sync("web")
	if got := v.replicas("web"); got != 6 {
		t.Fatalf("replicas %d, want 6", got)
	}
	if u := *v.status("web").Status.CurrentMetrics[0].Resource.Current.AverageUtilization; u != 90 {
		t.Fatalf("utilization %d, want 90", u)
	}
}

// TestStatefulSetTarget: the target is found by kind and its spec.replicas
// written through JSON, so a StatefulSet (a kind this package does not
// know) scales like a Deployment.
func TestStatefulSetTarget(t *testing.T) {
	if _, err := manifests.KindFor("apps/v1", "StatefulSet"); err != nil {
		t.Skip("no StatefulSet kind")
	}
	v := newEnv(t)
	objs, err := manifests.Decode([]byte(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: web, image: fake://run}]
`))
	if err != nil {
		t.Fatal(err)
	}
	manifests.Default(objs[0])
	if _, err := v.e.Store.Create(v.ctx, objs[0]); err != nil {
		t.Fatal(err)
	}
	uid := v.pod("db", "db-0", "n1", true)
	v.report("n1", figures{"db-0", uid, "300m", ""})
	h := &manifests.HorizontalPodAutoscaler{ObjectMeta: manifests.ObjectMeta{Name: "db", Namespace: "default"}}
	h.Spec.ScaleTargetRef = manifests.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db"}
	h.Spec.MaxReplicas = 5
	h.Spec.Metrics = cpuUtil(100)
	manifests.Default(h)
	if err := manifests.Validate(h); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Store.Create(v.ctx, h); err != nil {
		t.Fatal(err)
	}
	v.sync("db")
	obj, err := v.e.Store.Get(v.ctx, "statefulsets", "default", "db")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(obj)
	if !strings.Contains(string(raw), `"replicas":3`) || !strings.Contains(string(raw), `"serviceName":"db"`) {
		t.Fatalf("statefulset after the sync: %s", raw)
	}
}

// racingStore is the real store, with another writer changing the target
// between the controller's read and its write, once.
type racingStore struct {
	*store.Store
	v    *env
	done bool
}

func (r *racingStore) Update(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	if _, ok := obj.(*manifests.Deployment); ok && !r.done {
		r.done = true
		r.v.setReplicas(obj.GetObjectMeta().Name, 3) // e.g. edgectl scale
	}
	return r.Store.Update(ctx, obj)
}

// TestRescaleIsCompareAndSwap: a target changed since it was read is not
// overwritten; the sync is retried and works from the new size.
func TestRescaleIsCompareAndSwap(t *testing.T) {
	v := newEnv(t)
	v.c.st = &racingStore{Store: v.e.Store, v: v}
	v.deployment("web", 2)
	a, b := v.pod("web", "web-a", "n1", true), v.pod("web", "web-b", "n1", true)
	v.report("n1", figures{"web-a", a, "90m", ""}, figures{"web-b", b, "90m", ""})
	v.hpa("web", "web", 1, 10, cpuUtil(50), nil)
	v.hpas.Load(t, v.e.Store, "horizontalpodautoscalers")
	v.pods.Load(t, v.e.Store, "pods")
	err := v.c.Sync(v.ctx, "default/web")
	if !errors.Is(err, controller.ErrRetry) {
		t.Fatalf("sync over a changed target: %v, want a retry", err)
	}
	if got := v.replicas("web"); got != 3 {
		t.Fatalf("replicas %d: the other writer's 3 was overwritten", got)
	}
	// Retried: 3 replicas by the spec, 2 pods at 90 % -> ceil(1.8 * 2) = 4.
	v.sync("web")
	if got := v.replicas("web"); got != 4 {
		t.Fatalf("replicas %d after the retry, want 4", got)
	}
}
