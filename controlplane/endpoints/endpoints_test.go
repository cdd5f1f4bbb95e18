package endpoints

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

type fixture struct {
	t               *testing.T
	ctx             context.Context
	env             *controllertest.Env
	svcs, pods, eps *controller.Informer
	c               *Controller
}

func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{t: t, ctx: ctx, env: env,
		svcs: controller.NewInformer(env.Store, "services"),
		pods: controller.NewInformer(env.Store, "pods"),
		eps:  controller.NewInformer(env.Store, "endpoints"),
	}
	f.c = New(env.Store, f.svcs, f.pods, f.eps)
	for _, inf := range []*controller.Informer{f.svcs, f.pods, f.eps} {
		go inf.Run(ctx)
		if err := inf.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func rev(o manifests.Object) uint64 {
	n, _ := strconv.ParseUint(o.GetObjectMeta().ResourceVersion, 10, 64)
	return n
}

// cached waits until inf holds obj's revision (or, with gone, nothing).
func (f *fixture) cached(inf *controller.Informer, key string, minRev uint64, gone bool) {
	f.t.Helper()
	controllertest.Eventually(f.t, 5*time.Second, func() error {
		o, ok := inf.Get(key)
		if gone {
			if ok {
				return fmt.Errorf("%s still cached", key)
			}
			return nil
		}
		if !ok || rev(o) < minRev {
			return fmt.Errorf("%s not cached yet", key)
		}
		return nil
	})
}

func (f *fixture) write(obj manifests.Object) manifests.Object {
	f.t.Helper()
	manifests.Default(obj)
	var got manifests.Object
	var err error
	if obj.GetObjectMeta().ResourceVersion == "" {
		got, err = f.env.Store.Create(f.ctx, obj)
	} else {
		got, err = f.env.Store.Update(f.ctx, obj)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	inf := f.pods
	if _, ok := obj.(*manifests.Service); ok {
		inf = f.svcs
	}
	f.cached(inf, controller.Key(got), rev(got), false)
	return got
}

// sync runs a sync of the service and waits for the endpoints cache to
// show its result.
func (f *fixture) sync(key string) *manifests.Endpoints {
	f.t.Helper()
	if err := f.c.Sync(f.ctx, key); err != nil {
		f.t.Fatal(err)
	}
	ns, name := controller.SplitKey(key)
	obj, err := f.env.Store.Get(f.ctx, "endpoints", ns, name)
	if client.IsNotFound(err) {
		f.cached(f.eps, key, 0, true)
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.cached(f.eps, key, rev(obj), false)
	return obj.(*manifests.Endpoints)
}

func newPod(name, ip string, ready bool, labels map[string]string, ports ...manifests.ContainerPort) *manifests.Pod {
	p := &manifests.Pod{}
	p.Name, p.Namespace, p.Labels = name, "default", labels
	p.Spec.NodeName = "node-" + name
	p.Spec.Containers = []manifests.Container{{Name: "app", Image: "busybox", Ports: ports}}
	p.Status.Phase = "Running"
	p.Status.PodIP = ip
	st := "False"
	if ready {
		st = "True"
	}
	p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: st}}
	return p
}

func newService(name string, sel map[string]string, ports ...manifests.ServicePort) *manifests.Service {
	s := &manifests.Service{}
	s.Name, s.Namespace = name, "default"
	s.Spec.Selector = sel
	s.Spec.Ports = ports
	return s
}

func addrIPs(a []manifests.EndpointAddress) []string {
	var out []string
	for _, x := range a {
		out = append(out, x.IP)
	}
	return out
}

func TestSyncReadinessPortsAndDeletion(t *testing.T) {
	f := newFixture(t)
	web := map[string]string{"app": "web"}
	f.write(newService("web", web,
		manifests.ServicePort{Name: "http", Port: 80, TargetPort: manifests.FromString("http")},
		manifests.ServicePort{Name: "metrics", Port: 9090, TargetPort: manifests.FromInt(9100)}))
	a := f.write(newPod("a", "10.244.0.2", true, web, manifests.ContainerPort{Name: "http", ContainerPort: 8080}))
	f.write(newPod("b", "10.244.1.2", false, web, manifests.ContainerPort{Name: "http", ContainerPort: 8080}))
	f.write(newPod("c", "10.244.1.3", true, web))                                                   // lacks the named port
	f.write(newPod("d", "", true, web, manifests.ContainerPort{Name: "http", ContainerPort: 8080})) // no IP yet
	f.write(newPod("other", "10.244.0.9", true, map[string]string{"app": "db"}))                    // not selected

	ep := f.sync("default/web")
	if ep == nil || len(ep.Subsets) != 2 {
		t.Fatalf("endpoints: %+v", ep)
	}
	// Subsets sorted by their port key: "http/TCP/8080,metrics/..." before "metrics/...".
	full, metricsOnly := ep.Subsets[0], ep.Subsets[1]
	if got := addrIPs(full.Addresses); !reflect.DeepEqual(got, []string{"10.244.0.2"}) {
		t.Errorf("ready addresses: %v", got)
	}
	if got := addrIPs(full.NotReadyAddresses); !reflect.DeepEqual(got, []string{"10.244.1.2"}) {
		t.Errorf("not-ready addresses: %v", got)
	}
	wantPorts := []manifests.EndpointPort{{Name: "http", Port: 8080, Protocol: "TCP"}, {Name: "metrics", Port: 9100, Protocol: "TCP"}}
	if !reflect.DeepEqual(full.Ports, wantPorts) {
		t.Errorf("ports: %+v", full.Ports)
	}
	if got := addrIPs(metricsOnly.Addresses); !reflect.DeepEqual(got, []string{"10.244.1.3"}) || len(metricsOnly.Ports) != 1 || metricsOnly.Ports[0].Port != 9100 {
		t.Errorf("pod without the named port: %+v", metricsOnly)
	}
	addr := full.Addresses[0]
	if addr.NodeName == nil || *addr.NodeName != "node-a" || addr.TargetRef == nil || addr.TargetRef.Name != "a" || addr.TargetRef.UID == "" {
		t.Errorf("address: %+v", addr)
	}

	// A second sync with nothing changed writes nothing.
	before := rev(ep)
	if ep2 := f.sync("default/web"); rev(ep2) != before {
		t.Fatalf("idempotent sync wrote: rev %d -> %d", before, rev(ep2))
	}

	// a becomes unready: it moves to notReadyAddresses.
	pa := a.(*manifests.Pod)
	pa.Status.Conditions[0].Status = "False"
	f.write(pa)
	ep = f.sync("default/web")
	if got := addrIPs(ep.Subsets[0].NotReadyAddresses); !reflect.DeepEqual(got, []string{"10.244.0.2", "10.244.1.2"}) || len(ep.Subsets[0].Addresses) != 0 {
		t.Fatalf("after a unready: %+v", ep.Subsets[0])
	}

	// Deleting the service deletes its endpoints.
	if _, err := f.env.Store.Delete(f.ctx, "services", "default", "web", 0); err != nil {
		t.Fatal(err)
	}
	f.cached(f.svcs, "default/web", 0, true)
	if ep := f.sync("default/web"); ep != nil {
		t.Fatalf("endpoints outlived the service: %+v", ep)
	}
}

func TestSyncSkipsSelectorlessAndQueuesOnPodChange(t *testing.T) {
	f := newFixture(t)
	f.write(newService("manual", nil, manifests.ServicePort{Port: 80}))
	if ep := f.sync("default/manual"); ep != nil {
		t.Fatalf("selectorless service got endpoints: %+v", ep)
	}
	// Published unready addresses count as ready.
	s := newService("pub", map[string]string{"app": "x"}, manifests.ServicePort{Port: 80})
	s.Spec.PublishNotReadyAddresses = true
	f.write(s)
	p := f.write(newPod("p", "10.244.0.5", false, map[string]string{"app": "x"}))
	ep := f.sync("default/pub")
	if ep == nil || len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Ports[0].Port != 80 {
		t.Fatalf("publishNotReadyAddresses: %+v", ep)
	}
	// A pod change queues the services that select it, and only those.
	f.c.PodChanged(nil, p)
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("queued %d keys, want 1", n)
	}
	key, _ := f.c.queue.Get(f.ctx)
	if key != "default/pub" {
		t.Fatalf("queued %q", key)
	}
}

// A pod's hostname is in the Endpoints of the Service its subdomain names
// only.
func TestHostnameOnlyInTheSubdomainService(t *testing.T) {
	f := newFixture(t)
	sel := map[string]string{"app": "db"}
	f.write(newService("db", sel))
	f.write(newService("other", sel))
	p := newPod("db-0", "10.244.0.5", true, sel)
	p.Spec.Hostname, p.Spec.Subdomain = "db-0", "db"
	f.write(p)
	for svc, want := range map[string]string{"db": "db-0", "other": ""} {
		ep := f.sync("default/" + svc)
		if ep == nil || len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 {
			t.Fatalf("%s: endpoints %+v", svc, ep)
		}
		if got := ep.Subsets[0].Addresses[0].Hostname; got != want {
			t.Errorf("%s: hostname %q, want %q", svc, got, want)
		}
	}
}
