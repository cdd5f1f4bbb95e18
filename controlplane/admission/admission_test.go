package admission_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/admission"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/replicaset"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

func start(t *testing.T) (*store.Store, *controllertest.Env, context.Context) {
	t.Helper()
	env := controllertest.Start(t)
	adm := admission.New(env.Store, nil)
	env.Store.SetAdmitter(adm)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if !uncached {
		go adm.Watch(ctx, env.Store)
		controllertest.Eventually(t, 10*time.Second, func() error {
			if !adm.CacheSynced() {
				return fmt.Errorf("admission caches not synced")
			}
			return nil
		})
	}
	return env.Store, env, ctx
}

// uncached makes start leave admission without its caches (reading the
// store on every create), as it is until they have synced.
var uncached bool

// TestUncached runs the quota and LimitRange tests with admission reading
// the store instead of its caches.
func TestUncached(t *testing.T) {
	uncached = true
	t.Cleanup(func() { uncached = false })
	for name, f := range map[string]func(*testing.T){
		"LimitRangeDefaultsAndMax": TestLimitRangeDefaultsAndMax, "QuotaPods": TestQuotaPods,
		"QuotaCountsExistingObjects": TestQuotaCountsExistingObjects, "QuotaConcurrentCreates": TestQuotaConcurrentCreates,
	} {
		t.Run(name, f)
	}
}

func create(t *testing.T, ctx context.Context, st *store.Store, obj manifests.Object) (manifests.Object, error) {
	t.Helper()
	manifests.Default(obj)
	if err := manifests.Validate(obj); err != nil {
		t.Fatalf("validate %s: %v", obj.GetObjectMeta().Name, err)
	}
	return st.Create(ctx, obj)
}

func mustCreate(t *testing.T, ctx context.Context, st *store.Store, obj manifests.Object) manifests.Object {
	t.Helper()
	got, err := create(t, ctx, st, obj)
	if err != nil {
		t.Fatalf("create %s: %v", obj.GetObjectMeta().Name, err)
	}
	return got
}

func pod(name string, req, lim manifests.ResourceList) *manifests.Pod {
	return &manifests.Pod{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "app", Image: "fake://run",
			Resources: manifests.ResourceRequirements{Requests: req, Limits: lim}}}},
	}
}

func quota(name string, hard manifests.ResourceList) *manifests.ResourceQuota {
	return &manifests.ResourceQuota{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.ResourceQuotaSpec{Hard: hard}}
}

func wantForbidden(t *testing.T, err error, want string) {
	t.Helper()
	if client.CodeOf(err) != client.CodeForbidden || err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v (code %q), want Forbidden containing %q", err, client.CodeOf(err), want)
	}
}

func count(t *testing.T, ctx context.Context, st *store.Store, resource string) int {
	t.Helper()
	objs, _, err := st.List(ctx, resource, "default", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	return len(objs)
}

func used(t *testing.T, ctx context.Context, st *store.Store, name, res string) manifests.Quantity {
	t.Helper()
	o, err := st.Get(ctx, "resourcequotas", "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*manifests.ResourceQuota).Status.Used[res]
}

func TestLimitRangeDefaultsAndMax(t *testing.T) {
	st, _, ctx := start(t)
	mustCreate(t, ctx, st, &manifests.LimitRange{ObjectMeta: manifests.ObjectMeta{Name: "lr", Namespace: "default"},
		Spec: manifests.LimitRangeSpec{Limits: []manifests.LimitRangeItem{{
			Type:           "Container",
			Default:        manifests.ResourceList{"memory": "128Mi", "cpu": "200m"},
			DefaultRequest: manifests.ResourceList{"memory": "64Mi"},
			Max:            manifests.ResourceList{"memory": "256Mi"},
			Min:            manifests.ResourceList{"cpu": "10m"},
		}}}})
	got := mustCreate(t, ctx, st, pod("a", nil, nil)).(*manifests.Pod)
	r := got.Spec.Containers[0].Resources
	if r.Limits["memory"] != "128Mi" || r.Limits["cpu"] != "200m" || r.Requests["memory"] != "64Mi" || r.Requests["cpu"] != "200m" {
		t.Fatalf("defaults not applied: %+v", r)
	}
	_, err := create(t, ctx, st, pod("big", nil, manifests.ResourceList{"memory": "512Mi"}))
	wantForbidden(t, err, `pods "big" is forbidden: maximum memory usage per Container is 256Mi, but limit is 512Mi`)
	_, err = create(t, ctx, st, pod("tiny", manifests.ResourceList{"cpu": "1m"}, nil))
	wantForbidden(t, err, `minimum cpu usage per Container is 10m, but request is 1m`)
	// A request above the default limit is refused.
	_, err = create(t, ctx, st, pod("low", manifests.ResourceList{"memory": "200Mi"}, nil))
	if client.CodeOf(err) != client.CodeInvalid || !strings.Contains(err.Error(), "must be less than or equal to memory limit of 128Mi") {
		t.Fatalf("error = %v", err)
	}
	if n := count(t, ctx, st, "pods"); n != 1 {
		t.Fatalf("%d pods stored, want 1", n)
	}
}

func TestLimitRangePodMaxAndRatio(t *testing.T) {
	st, _, ctx := start(t)
	mustCreate(t, ctx, st, &manifests.LimitRange{ObjectMeta: manifests.ObjectMeta{Name: "lr", Namespace: "default"},
		Spec: manifests.LimitRangeSpec{Limits: []manifests.LimitRangeItem{
			{Type: "Pod", Max: manifests.ResourceList{"cpu": "1"}},
			{Type: "Container", MaxLimitRequestRatio: manifests.ResourceList{"memory": "2"}},
		}}})
	p := pod("two", manifests.ResourceList{"cpu": "600m"}, manifests.ResourceList{"cpu": "600m"})
	p.Spec.Containers = append(p.Spec.Containers, manifests.Container{Name: "b", Image: "fake://run", Resources: p.Spec.Containers[0].Resources})
	_, err := create(t, ctx, st, p)
	wantForbidden(t, err, "maximum cpu usage per Pod is 1, but limit is 1200m")
	_, err = create(t, ctx, st, pod("ratio", manifests.ResourceList{"memory": "10Mi", "cpu": "1"}, manifests.ResourceList{"memory": "30Mi", "cpu": "1"}))
	wantForbidden(t, err, "memory max limit to request ratio per Container is 2, but provided ratio is 3.000000")
	mustCreate(t, ctx, st, pod("ok", manifests.ResourceList{"memory": "10Mi", "cpu": "500m"}, manifests.ResourceList{"memory": "20Mi", "cpu": "500m"}))
}

func TestLimitRangeInvalid(t *testing.T) {
	lr := &manifests.LimitRange{ObjectMeta: manifests.ObjectMeta{Name: "lr", Namespace: "default"},
		Spec: manifests.LimitRangeSpec{Limits: []manifests.LimitRangeItem{{Type: "PersistentVolumeClaim"}, {Type: "Container", Min: manifests.ResourceList{"cpu": "2"}, Max: manifests.ResourceList{"cpu": "1"}}}}}
	err := manifests.Validate(lr)
	if err == nil || !strings.Contains(err.Error(), "spec.limits[0].type") || !strings.Contains(err.Error(), "min value 2 is greater than max value 1") {
		t.Fatalf("Validate = %v", err)
	}
	q := quota("q", manifests.ResourceList{"bananas": "1", "count/deployments.apps": "1.5"})
	err = manifests.Validate(q)
	if err == nil || !strings.Contains(err.Error(), "spec.hard[bananas]") || !strings.Contains(err.Error(), "must be a whole number") {
		t.Fatalf("Validate = %v", err)
	}
}

func TestQuotaPods(t *testing.T) {
	st, _, ctx := start(t)
	mustCreate(t, ctx, st, quota("q", manifests.ResourceList{"pods": "2"}))
	mustCreate(t, ctx, st, pod("p1", nil, nil))
	mustCreate(t, ctx, st, pod("p2", nil, nil))
	_, err := create(t, ctx, st, pod("p3", nil, nil))
	wantForbidden(t, err, `pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`)
	if n := count(t, ctx, st, "pods"); n != 2 {
		t.Fatalf("%d pods stored, want 2", n)
	}
	// Deleting a pod frees room.
	if _, err := st.Delete(ctx, "pods", "default", "p1", 0); err != nil {
		t.Fatal(err)
	}
	if u := used(t, ctx, st, "q", "pods"); u != "1" {
		t.Fatalf("used pods = %s after delete, want 1", u)
	}
	mustCreate(t, ctx, st, pod("p3", nil, nil))
	// A finished pod stops counting.
	o, _ := st.Get(ctx, "pods", "default", "p2")
	p := o.(*manifests.Pod)
	p.Status.Phase = manifests.PodSucceeded
	if _, err := st.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, ctx, st, pod("p4", nil, nil))
	if u := used(t, ctx, st, "q", "pods"); u != "2" {
		t.Fatalf("used pods = %s, want 2", u)
	}
	// An already existing name does not leak a charge.
	if _, err := st.Delete(ctx, "pods", "default", "p3", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := create(t, ctx, st, pod("p4", nil, nil)); client.CodeOf(err) != client.CodeExists {
		t.Fatalf("duplicate create: %v", err)
	}
	if u := used(t, ctx, st, "q", "pods"); u != "1" {
		t.Fatalf("used pods = %s, want 1", u)
	}
}

func TestQuotaCountsExistingObjects(t *testing.T) {
	st, _, ctx := start(t)
	for i := range 2 {
		mustCreate(t, ctx, st, &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: fmt.Sprintf("c%d", i), Namespace: "default"}})
	}
	q := mustCreate(t, ctx, st, quota("q", manifests.ResourceList{"count/configmaps": "3", "configmaps": "3", "count/deployments.apps": "0"})).(*manifests.ResourceQuota)
	if q.Status.Used["count/configmaps"] != "2" || q.Status.Hard["configmaps"] != "3" {
		t.Fatalf("status = %+v", q.Status)
	}
	mustCreate(t, ctx, st, &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "c2", Namespace: "default"}})
	_, err := create(t, ctx, st, &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "c3", Namespace: "default"}})
	wantForbidden(t, err, `configmaps "c3" is forbidden: exceeded quota: q, requested: configmaps=1,count/configmaps=1, used: configmaps=3,count/configmaps=3, limited: configmaps=3,count/configmaps=3`)
	replicas := int32(1)
	d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "d", Namespace: "default"},
		Spec: manifests.DeploymentSpec{Replicas: &replicas, Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: manifests.PodTemplateSpec{ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"a": "b"}},
				Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "app", Image: "fake://run"}}}}}}
	_, err = create(t, ctx, st, d)
	wantForbidden(t, err, "exceeded quota: q, requested: count/deployments.apps=1, used: count/deployments.apps=0, limited: count/deployments.apps=0")
}

func TestQuotaRequestsMemory(t *testing.T) {
	st, _, ctx := start(t)
	mustCreate(t, ctx, st, quota("mem", manifests.ResourceList{"requests.memory": "1Gi", "requests.cpu": "2"}))
	_, err := create(t, ctx, st, pod("bare", nil, nil))
	wantForbidden(t, err, `pods "bare" is forbidden: failed quota: mem: must specify requests.cpu,requests.memory`)
	mustCreate(t, ctx, st, pod("a", manifests.ResourceList{"memory": "512Mi", "cpu": "500m"}, nil))
	mustCreate(t, ctx, st, pod("b", manifests.ResourceList{"memory": "256Mi", "cpu": "500m"}, nil))
	_, err = create(t, ctx, st, pod("c", manifests.ResourceList{"memory": "512Mi", "cpu": "100m"}, nil))
	wantForbidden(t, err, "exceeded quota: mem, requested: requests.memory=512Mi, used: requests.memory=768Mi, limited: requests.memory=1Gi")
	if u := used(t, ctx, st, "mem", "requests.cpu"); u != "1" {
		t.Fatalf("used requests.cpu = %s, want 1 (the refused pod must not be charged)", u)
	}
	mustCreate(t, ctx, st, pod("d", manifests.ResourceList{"memory": "256Mi", "cpu": "100m"}, nil))
	if u := used(t, ctx, st, "mem", "requests.memory"); u != "1Gi" {
		t.Fatalf("used requests.memory = %s, want 1Gi", u)
	}
}

func TestQuotaConcurrentCreates(t *testing.T) {
	st, _, ctx := start(t)
	mustCreate(t, ctx, st, quota("q", manifests.ResourceList{"pods": "3"}))
	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := pod(fmt.Sprintf("p%d", i), nil, nil)
			manifests.Default(p)
			_, err := st.Create(ctx, p)
			switch client.CodeOf(err) {
			case "":
				ok.Add(1)
			case client.CodeForbidden:
				refused.Add(1)
			default:
				t.Errorf("create p%d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 3 || refused.Load() != 7 {
		objs, _, _ := st.List(ctx, "pods", "default", manifests.Selector{})
		for _, o := range objs {
			t.Logf("pod %s rv %s", o.GetObjectMeta().Name, o.GetObjectMeta().ResourceVersion)
		}
		q, _ := st.Get(ctx, "resourcequotas", "default", "q")
		t.Logf("quota %+v rv %s", q.(*manifests.ResourceQuota).Status, q.GetObjectMeta().ResourceVersion)
		t.Fatalf("%d created, %d refused; want 3 and 7", ok.Load(), refused.Load())
	}
	if n := count(t, ctx, st, "pods"); n != 3 {
		t.Fatalf("%d pods stored, want 3", n)
	}
	if u := used(t, ctx, st, "q", "pods"); u != "3" {
		t.Fatalf("used = %s, want 3", u)
	}
}

// A ReplicaSet of 3 under pods=2 gets 2 pods and a FailedCreate event: the
// controller's creates pass the same admission as the API's.
func TestQuotaReplicaSetFailedCreate(t *testing.T) {
	st, env, ctx := start(t)
	mustCreate(t, ctx, st, quota("q", manifests.ResourceList{"pods": "2"}))
	rsets := controller.NewInformer(env.Store, "replicasets")
	pods := controller.NewInformer(env.Store, "pods")
	for _, inf := range []*controller.Informer{rsets, pods} {
		go inf.Run(ctx)
		if err := inf.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rec := &controllertest.Recorder{}
	c := replicaset.New(env.Store, rsets, pods, rec)
	replicas := int32(3)
	labels := map[string]string{"app": "web"}
	rs := mustCreate(t, ctx, st, &manifests.ReplicaSet{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: manifests.ReplicaSetSpec{Replicas: &replicas, Selector: &manifests.LabelSelector{MatchLabels: labels},
			Template: manifests.PodTemplateSpec{ObjectMeta: manifests.ObjectMeta{Labels: labels},
				Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "app", Image: "fake://run"}}}}}})
	controllertest.Eventually(t, 10*time.Second, func() error {
		if _, ok := rsets.Get(controller.Key(rs)); !ok {
			return fmt.Errorf("replicaset not cached")
		}
		return nil
	})
	_ = c.Sync(ctx, controller.Key(rs))
	controllertest.Eventually(t, 10*time.Second, func() error {
		if rec.Find("FailedCreate") == "" {
			_ = c.Sync(ctx, controller.Key(rs))
			return fmt.Errorf("no FailedCreate event yet: %v", rec.Reasons())
		}
		return nil
	})
	if e := rec.Find("FailedCreate"); !strings.Contains(e, "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2") {
		t.Fatalf("event = %q", e)
	}
	if n := count(t, ctx, st, "pods"); n != 2 {
		t.Fatalf("%d pods stored, want 2", n)
	}
}

// countingStore counts the reads admission makes of the store.
type countingStore struct {
	*store.Store
	lists, gets atomic.Int64
}

func (c *countingStore) List(ctx context.Context, resource, namespace string, sel manifests.Selector) ([]manifests.Object, uint64, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, resource, namespace, sel)
}

func (c *countingStore) Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, resource, namespace, name)
}

// With its caches synced, admission reads nothing from the store for a
// create in a namespace without quotas or LimitRanges (at 10,000 nodes a
// DaemonSet's pods stalled when every create listed both), and reads only
// the quotas by name where there are some.
func TestCachedAdmissionReads(t *testing.T) {
	env := controllertest.Start(t)
	cs := &countingStore{Store: env.Store}
	adm := admission.New(cs, nil)
	env.Store.SetAdmitter(adm)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go adm.Watch(ctx, env.Store)
	controllertest.Eventually(t, 10*time.Second, func() error {
		if !adm.CacheSynced() {
			return fmt.Errorf("admission caches not synced")
		}
		return nil
	})
	for i := range 20 {
		mustCreate(t, ctx, env.Store, pod(fmt.Sprintf("p%d", i), nil, nil))
	}
	if l, g := cs.lists.Load(), cs.gets.Load(); l != 0 || g != 0 {
		t.Fatalf("20 creates without quotas read the store: %d lists, %d gets", l, g)
	}
	q := quota("q", manifests.ResourceList{"pods": "100"})
	q.Namespace = "other"
	mustCreate(t, ctx, env.Store, q)
	controllertest.Eventually(t, 10*time.Second, func() error {
		cs.lists.Store(0)
		cs.gets.Store(0)
		p := pod(fmt.Sprintf("probe-%d", time.Now().UnixNano()), nil, nil)
		p.Namespace = "other"
		mustCreate(t, ctx, env.Store, p)
		if l, g := cs.lists.Load(), cs.gets.Load(); l != 0 || g != 1 {
			return fmt.Errorf("a create under one quota: %d lists, %d gets, want 0 and 1", l, g)
		}
		return nil
	})
	got, err := env.Store.Get(ctx, "resourcequotas", "other", "q")
	if err != nil {
		t.Fatal(err)
	}
	if u := got.(*manifests.ResourceQuota).Status.Used["pods"]; u == "0" || u == "" {
		t.Fatalf("quota in namespace other not charged: used %q", u)
	}
	cs.lists.Store(0)
	cs.gets.Store(0)
	mustCreate(t, ctx, env.Store, pod("after", nil, nil))
	if l, g := cs.lists.Load(), cs.gets.Load(); l != 0 || g != 0 {
		t.Fatalf("a create in default after a quota elsewhere read the store: %d lists, %d gets", l, g)
	}
}
