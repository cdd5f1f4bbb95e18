package api

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// newServiceEnv is newEnv with a service allocator over cidr, plus
// `extra` more API servers sharing the same NATS and buckets.
func newServiceEnv(t *testing.T, cidr string, extra int) *env {
	t.Helper()
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var first *env
	for i := 0; i <= extra; i++ {
		nc, err := messaging.Connect(ctx, ns.ClientURL(), fmt.Sprintf("api-test-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		b, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st := store.New(b.Objects)
		alloc, err := ipam.NewServices(b.Leases, st, cidr)
		if err != nil {
			t.Fatal(err)
		}
		srv := New(st, nc, Options{Services: alloc})
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := srv.Stop(); err != nil {
				t.Error(err)
			}
		})
		if first == nil {
			first = &env{st: st, nc: nc, c: client.New(nc), srv: srv}
		}
	}
	return first
}

func service(name, typ, clusterIP string, nodePorts ...int32) *manifests.Service {
	s := &manifests.Service{}
	s.Name = name
	s.Spec.Type = typ
	s.Spec.ClusterIP = clusterIP
	s.Spec.Selector = map[string]string{"app": name}
	s.Spec.Ports = []manifests.ServicePort{{Name: "http", Port: 80, TargetPort: manifests.FromInt(8080)}}
	for i, p := range nodePorts {
		if i > 0 {
			s.Spec.Ports = append(s.Spec.Ports, manifests.ServicePort{Name: fmt.Sprintf("p%d", i), Port: int32(81 + i)})
		}
		s.Spec.Ports[i].NodePort = p
	}
	return s
}

func applySvc(t *testing.T, e *env, s *manifests.Service) *manifests.Service {
	t.Helper()
	_, obj, err := e.c.Apply(ctxT(t), s)
	if err != nil {
		t.Fatalf("apply %s: %v", s.Name, err)
	}
	return obj.(*manifests.Service)
}

func TestServiceClusterIPAllocation(t *testing.T) {
	e := newServiceEnv(t, "10.96.0.0/29", 0) // hosts .1-.6
	ctx := ctxT(t)
	a := applySvc(t, e, service("a", "", ""))
	b := applySvc(t, e, service("b", "", ""))
	if a.Spec.ClusterIP != "10.96.0.1" || b.Spec.ClusterIP != "10.96.0.2" || len(a.Spec.ClusterIPs) != 1 || a.Spec.ClusterIPs[0] != "10.96.0.1" {
		t.Fatalf("sequential IPs: a %q %v, b %q", a.Spec.ClusterIP, a.Spec.ClusterIPs, b.Spec.ClusterIP)
	}
	// Re-applying the manifest (no clusterIP) keeps the IP and changes nothing.
	res, obj, err := e.c.Apply(ctx, service("a", "", ""))
	if err != nil || res != client.ResultUnchanged || obj.(*manifests.Service).Spec.ClusterIP != "10.96.0.1" {
		t.Fatalf("re-apply: %s %v %v", res, obj, err)
	}
	// An explicit free IP is taken; a taken one or one out of range is refused.
	c := applySvc(t, e, service("c", "", "10.96.0.5"))
	if c.Spec.ClusterIP != "10.96.0.5" {
		t.Fatalf("explicit IP: %q", c.Spec.ClusterIP)
	}
	_, _, err = e.c.Apply(ctx, service("d", "", "10.96.0.2"))
	wantCode(t, err, client.CodeInvalid, `Service "d" is invalid: spec.clusterIP: Invalid value: "10.96.0.2": provided IP is already allocated`)
	_, _, err = e.c.Apply(ctx, service("d", "", "10.0.0.1"))
	wantCode(t, err, client.CodeInvalid, `Service "d" is invalid: spec.clusterIP: Invalid value: "10.0.0.1": provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/29`)
	_, _, err = e.c.Apply(ctx, service("d", "", "10.96.0.7")) // broadcast
	wantCode(t, err, client.CodeInvalid, "")
	// Changing the IP of a service is refused.
	_, _, err = e.c.Apply(ctx, service("a", "", "10.96.0.6"))
	wantCode(t, err, client.CodeInvalid, `Service "a" is invalid: spec.clusterIP: invalid value "10.96.0.6": field is immutable`)
	// Headless services get no IP.
	h := applySvc(t, e, service("h", "", "None"))
	if h.Spec.ClusterIP != "None" {
		t.Fatalf("headless: %q", h.Spec.ClusterIP)
	}
	// The next allocation skips the explicit .5; the one after fills .6,
	// then the range is full.
	d := applySvc(t, e, service("d", "", ""))
	f := applySvc(t, e, service("f", "", ""))
	g := applySvc(t, e, service("g", "", ""))
	if d.Spec.ClusterIP != "10.96.0.3" || f.Spec.ClusterIP != "10.96.0.4" || g.Spec.ClusterIP != "10.96.0.6" {
		t.Fatalf("fill: d %q f %q g %q", d.Spec.ClusterIP, f.Spec.ClusterIP, g.Spec.ClusterIP)
	}
	_, _, err = e.c.Apply(ctx, service("full", "", ""))
	if err == nil {
		t.Fatal("apply into a full range: want an error")
	}
	// Deleting releases the IP for reuse at once.
	if _, err := e.c.Delete(ctx, "services", "default", "b"); err != nil {
		t.Fatal(err)
	}
	n := applySvc(t, e, service("n", "", ""))
	if n.Spec.ClusterIP != "10.96.0.2" {
		t.Fatalf("after delete: %q, want the released 10.96.0.2", n.Spec.ClusterIP)
	}
	// A failed create (invalid) leaves no claim behind: .2 is free again
	// after n is deleted even though "x" tried to take it meanwhile.
	if _, err := e.c.Delete(ctx, "services", "default", "n"); err != nil {
		t.Fatal(err)
	}
	bad := service("x", "", "10.96.0.2")
	bad.Spec.Ports[0].Port = 0
	if _, _, err := e.c.Apply(ctx, bad); client.CodeOf(err) != client.CodeInvalid {
		t.Fatalf("invalid service: %v", err)
	}
	if y := applySvc(t, e, service("y", "", "10.96.0.2")); y.Spec.ClusterIP != "10.96.0.2" {
		t.Fatalf("reuse: %q", y.Spec.ClusterIP)
	}
}

func TestServiceNodePortAllocation(t *testing.T) {
	e := newServiceEnv(t, "10.96.0.0/24", 0)
	ctx := ctxT(t)
	a := applySvc(t, e, service("a", "NodePort", "", 0, 0))
	if p := a.Spec.Ports; p[0].NodePort != 30000 || p[1].NodePort != 30001 {
		t.Fatalf("node ports: %+v", p)
	}
	b := applySvc(t, e, service("b", "NodePort", "", 30005))
	if b.Spec.Ports[0].NodePort != 30005 {
		t.Fatalf("explicit node port: %+v", b.Spec.Ports)
	}
	_, _, err := e.c.Apply(ctx, service("c", "NodePort", "", 30001))
	wantCode(t, err, client.CodeInvalid, `Service "c" is invalid: spec.ports[0].nodePort: Invalid value: 30001: provided port is already allocated`)
	_, _, err = e.c.Apply(ctx, service("c", "NodePort", "", 8080))
	wantCode(t, err, client.CodeInvalid, "")
	// Re-applying keeps the allocated ports.
	res, obj, err := e.c.Apply(ctx, service("a", "NodePort", "", 0, 0))
	if err != nil || res != client.ResultUnchanged || obj.(*manifests.Service).Spec.Ports[1].NodePort != 30001 {
		t.Fatalf("re-apply: %s %v", res, err)
	}
	c := applySvc(t, e, service("c", "NodePort", "", 0))
	if c.Spec.Ports[0].NodePort != 30002 {
		t.Fatalf("next node port: %+v", c.Spec.Ports)
	}
	// Turning a into a ClusterIP service releases its node ports.
	a = applySvc(t, e, service("a", "ClusterIP", ""))
	if a.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("ClusterIP service kept node port: %+v", a.Spec.Ports)
	}
	d := applySvc(t, e, service("d", "NodePort", "", 30001))
	if d.Spec.Ports[0].NodePort != 30001 {
		t.Fatalf("released node port: %+v", d.Spec.Ports)
	}
	// Deleting releases them too.
	if _, err := e.c.Delete(ctx, "services", "default", "b"); err != nil {
		t.Fatal(err)
	}
	if f := applySvc(t, e, service("f", "NodePort", "", 30005)); f.Spec.Ports[0].NodePort != 30005 {
		t.Fatalf("after delete: %+v", f.Spec.Ports)
	}
	// LoadBalancer is refused; ExternalName is stored without an IP.
	_, _, err = e.c.Apply(ctx, service("lb", "LoadBalancer", ""))
	wantCode(t, err, client.CodeInvalid, "")
	ext := &manifests.Service{}
	ext.Name = "ext"
	ext.Spec.Type = "ExternalName"
	ext.Spec.ExternalName = "example.com"
	if x := applySvc(t, e, ext); x.Spec.ClusterIP != "" {
		t.Fatalf("ExternalName got IP %q", x.Spec.ClusterIP)
	}
}

// Two API servers allocating at once never hand out one IP twice.
func TestServiceConcurrentAllocationUnique(t *testing.T) {
	e := newServiceEnv(t, "10.96.0.0/24", 1)
	const n = 16
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ips = map[string]string{}
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("s%d", i)
			_, obj, err := e.c.Apply(ctxT(t), service(name, "NodePort", "", 0))
			if err != nil {
				t.Errorf("apply %s: %v", name, err)
				return
			}
			s := obj.(*manifests.Service)
			mu.Lock()
			defer mu.Unlock()
			for _, key := range []string{s.Spec.ClusterIP, fmt.Sprint(s.Spec.Ports[0].NodePort)} {
				if other, dup := ips[key]; dup {
					t.Errorf("%s and %s both got %s", other, name, key)
				}
				ips[key] = name
			}
		}()
	}
	wg.Wait()
	if len(ips) != 2*n {
		t.Fatalf("got %d distinct IPs and ports, want %d", len(ips), 2*n)
	}
}

// Re-applying a Node manifest keeps the pod CIDR the control plane gave it.
func TestApplyNodeKeepsPodCIDR(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	n := &manifests.Node{}
	n.Name = "edge-1"
	_, obj, err := e.c.Apply(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	stored := obj.(*manifests.Node)
	stored.Spec.PodCIDR, stored.Spec.PodCIDRs = "10.244.3.0/24", []string{"10.244.3.0/24"}
	if _, err := e.st.Update(ctx, stored); err != nil {
		t.Fatal(err)
	}
	again := &manifests.Node{}
	again.Name, again.Labels = "edge-1", map[string]string{"site": "a"}
	_, obj, err = e.c.Apply(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*manifests.Node); got.Spec.PodCIDR != "10.244.3.0/24" || len(got.Spec.PodCIDRs) != 1 || got.Labels["site"] != "a" {
		t.Fatalf("re-applied node: %+v %v", got.Spec, got.Labels)
	}
}
