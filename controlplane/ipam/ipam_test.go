package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

func TestUsableIn(t *testing.T) {
	p := netip.MustParsePrefix("10.96.0.0/29")
	for ip, want := range map[string]bool{
		"10.96.0.0": false, "10.96.0.1": true, "10.96.0.6": true, "10.96.0.7": false, "10.96.0.8": false, "10.95.255.255": false,
	} {
		if got := usableIn(p, netip.MustParseAddr(ip)); got != want {
			t.Errorf("usableIn(%s) = %v, want %v", ip, got, want)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	for _, bad := range []string{"", "10.96.0.0", "fd00::/64", "10.0.0.0/31", "nonsense/8"} {
		if _, err := NewServices(nil, nil, bad); err == nil {
			t.Errorf("NewServices(%q): want an error", bad)
		}
	}
	s, err := NewServices(nil, nil, "10.96.3.7/16")
	if err != nil || s.CIDR().String() != "10.96.0.0/16" {
		t.Fatalf("NewServices: %v %v", s, err)
	}
	if _, err := NewPodCIDRs(nil, "10.244.0.0/16", 8); err == nil {
		t.Error("mask size shorter than the cluster CIDR: want an error")
	}
}

// A claim is exclusive; a stale claim whose holder does not use the
// address is taken over; release only frees one's own claim.
func TestClaims(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	now := time.Now()
	c := claims{kv: env.Buckets.Leases, stale: time.Minute, now: func() time.Time { return now }}
	notUsed := func(context.Context, string) (bool, error) { return false, nil }
	used := func(context.Context, string) (bool, error) { return true, nil }
	mustClaim := func(owner string, inUse inUseFunc, want bool) {
		t.Helper()
		got, err := c.claim(ctx, "svcip.10_96_0_1", owner, inUse)
		if err != nil || got != want {
			t.Fatalf("claim by %s = %v, %v; want %v", owner, got, err, want)
		}
	}
	mustClaim("a/x", notUsed, true)
	mustClaim("a/x", notUsed, true) // again by the holder
	mustClaim("a/y", notUsed, false)
	now = now.Add(2 * time.Minute) // the claim is stale now
	mustClaim("a/y", used, false)
	mustClaim("a/y", notUsed, true)
	if err := c.release(ctx, "svcip.10_96_0_1", "a/x"); err != nil {
		t.Fatal(err)
	}
	mustClaim("a/z", used, false) // still a/y's, and a/y uses it
	if err := c.release(ctx, "svcip.10_96_0_1", "a/y"); err != nil {
		t.Fatal(err)
	}
	mustClaim("a/z", used, true)
}

// An allocation that fails part-way (the second port's node port is taken)
// leaves no claim behind.
func TestAllocateUndoesOnFailure(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	s, err := NewServices(env.Buckets.Leases, env.Store, "10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, ports ...int32) *manifests.Service {
		svc := &manifests.Service{}
		svc.Name, svc.Namespace = name, "default"
		svc.Spec.Type = manifests.ServiceTypeNodePort
		for i, p := range ports {
			svc.Spec.Ports = append(svc.Spec.Ports, manifests.ServicePort{Name: string(rune('a' + i)), Port: 80 + int32(i), Protocol: "TCP", NodePort: p})
		}
		return svc
	}
	first := mk("first", 30001)
	if _, err := s.Allocate(ctx, first, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := mk("second", 30002, 30001)
	if _, err := s.Allocate(ctx, second, nil); err == nil {
		t.Fatal("want a conflict on 30001")
	}
	third := mk("third", 30002)
	if _, err := s.Allocate(ctx, third, nil); err != nil {
		t.Fatalf("30002 should be free again: %v", err)
	}
	if third.Spec.ClusterIP != "10.96.0.2" {
		t.Fatalf("cluster IP %q: the failed allocation's 10.96.0.2 should have been released", third.Spec.ClusterIP)
	}
	// A stored service counts even without a claim (written before the
	// allocator existed).
	legacy := mk("legacy", 30100)
	legacy.Spec.ClusterIP = "10.96.0.50"
	if _, err := env.Store.Create(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	for _, req := range []*manifests.Service{mk("ip", 0), mk("port", 30100)} {
		if req.Name == "ip" {
			req.Spec.ClusterIP = "10.96.0.50"
		}
		if _, err := s.Allocate(ctx, req, nil); err == nil {
			t.Errorf("%s: allocated what the stored legacy service holds: %+v", req.Name, req.Spec)
		}
	}
}

// Two creates of one service racing: the loser's undo keeps the claims the
// stored winner holds.
func TestUndoKeepsWinnersClaims(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	s, err := NewServices(env.Buckets.Leases, env.Store, "10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	mk := func() *manifests.Service {
		svc := &manifests.Service{}
		svc.Name, svc.Namespace = "web", "default"
		svc.Spec.Type = manifests.ServiceTypeClusterIP
		svc.Spec.Ports = []manifests.ServicePort{{Port: 80, Protocol: "TCP"}}
		return svc
	}
	loser, winner := mk(), mk()
	la, err := s.Allocate(ctx, loser, nil) // creates the claim
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(ctx, winner, nil); err != nil { // same owner: shares it
		t.Fatal(err)
	}
	if winner.Spec.ClusterIP != loser.Spec.ClusterIP {
		t.Fatalf("same service, different IPs: %q %q", winner.Spec.ClusterIP, loser.Spec.ClusterIP)
	}
	if _, err := env.Store.Create(ctx, winner); err != nil {
		t.Fatal(err)
	}
	if err := la.Undo(ctx); err != nil { // the loser's create failed
		t.Fatal(err)
	}
	other := mk()
	other.Name = "other"
	other.Spec.ClusterIP = winner.Spec.ClusterIP
	if _, err := s.Allocate(ctx, other, nil); err == nil {
		t.Fatalf("%s handed out twice", winner.Spec.ClusterIP)
	}
}

// countingStore counts the listings of the store.
type countingStore struct {
	Store
	lists atomic.Int32
}

func (c *countingStore) List(ctx context.Context, resource, namespace string, sel manifests.Selector) ([]manifests.Object, uint64, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, resource, namespace, sel)
}

// A burst of creates lists the services once (the view), and two
// allocators (two API processes) whose views miss each other's services
// still give distinct addresses: the claims turn the second one's
// attempts on taken addresses down.
func TestAllocateBurstListsOnceAndClaimsKeepAddressesDistinct(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	cs := &countingStore{Store: env.Store}
	s1, err := NewServices(env.Buckets.Leases, cs, "10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewServices(env.Buckets.Leases, env.Store, "10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, nodePort bool) *manifests.Service {
		svc := &manifests.Service{}
		svc.Name, svc.Namespace = name, "default"
		svc.Spec.Type = manifests.ServiceTypeClusterIP
		svc.Spec.Ports = []manifests.ServicePort{{Port: 80, Protocol: "TCP"}}
		if nodePort {
			svc.Spec.Type = manifests.ServiceTypeNodePort
		}
		return svc
	}
	ips, ports := map[string]string{}, map[int32]string{}
	create := func(s *Services, svc *manifests.Service) {
		t.Helper()
		a, err := s.Allocate(ctx, svc, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Store.Create(ctx, svc); err != nil {
			t.Fatal(err)
		}
		if err := a.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if o, dup := ips[svc.Spec.ClusterIP]; dup {
			t.Errorf("%s got cluster IP %s, which %s holds", svc.Name, svc.Spec.ClusterIP, o)
		}
		ips[svc.Spec.ClusterIP] = svc.Name
		for _, p := range svc.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			if o, dup := ports[p.NodePort]; dup {
				t.Errorf("%s got node port %d, which %s holds", svc.Name, p.NodePort, o)
			}
			ports[p.NodePort] = svc.Name
		}
	}
	// s2 lists the services while the store holds none: its view misses
	// all of s1's.
	create(s2, mk("first-of-2", true))
	for i := range 20 {
		create(s1, mk(fmt.Sprintf("one-%d", i), i%2 == 0))
	}
	if n := cs.lists.Load(); n != 1 {
		t.Errorf("20 creates listed the services %d times, want 1", n)
	}
	for i := range 20 {
		create(s2, mk(fmt.Sprintf("two-%d", i), i%2 == 0))
	}
	if len(ips) != 41 {
		t.Errorf("%d distinct cluster IPs for 41 services", len(ips))
	}
}
