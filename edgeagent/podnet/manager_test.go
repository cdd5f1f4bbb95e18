package podnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// chanWatcher hands out one event channel per Watch call.
type chanWatcher struct{ watches chan chan client.Event }

func (w *chanWatcher) Watch(ctx context.Context, resource, _, _ string) (<-chan client.Event, error) {
	if resource != "nodes" {
		return nil, fmt.Errorf("watch %s", resource)
	}
	ch := make(chan client.Event)
	select {
	case w.watches <- ch:
		return ch, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func node(name, cidr, ip string) *manifests.Node {
	n := &manifests.Node{ObjectMeta: manifests.ObjectMeta{Name: name}}
	n.Spec.PodCIDR = cidr
	if ip != "" {
		n.Status.Addresses = []manifests.NodeAddress{{Type: "InternalIP", Address: ip}}
	}
	return n
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hostRoutes(t *testing.T, nsPath string) map[string]string {
	t.Helper()
	h, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	routes, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range routes {
		out[r.Dst.String()] = r.Gw.String()
	}
	return out
}

func TestManagerFollowsNodes(t *testing.T) {
	needRoot(t)
	host := newNetNS(t)
	linkHosts(t, host, newNetNS(t), net.IPv4(192, 168, 88, 1).To4(), net.IPv4(192, 168, 88, 2).To4())
	dir := t.TempDir()
	bridge := randName(t, "et")
	mcfg := ManagerConfig{NodeName: "n1", RetryInterval: 10 * time.Millisecond,
		Network: Config{StateDir: dir, Bridge: bridge, HostNetNS: host, Forwarding: true}}
	m, err := NewManager(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Ready() {
		t.Fatal("ready without a podCIDR")
	}
	if _, err := m.Setup("x", host); err != ErrNotReady {
		t.Fatalf("setup before ready: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &chanWatcher{watches: make(chan chan client.Event)}
	done := make(chan struct{})
	go func() { m.Run(ctx, w); close(done) }()
	var ev chan client.Event
	defer func() {
		// As client.Watch does, the open watch ends with its context.
		cancel()
		close(ev)
		<-done
	}()

	ev = <-w.watches
	ev <- client.Event{Type: client.Added, Object: node("n2", "10.244.2.0/24", "192.168.88.2")}
	ev <- client.Event{Type: client.Added, Object: node("n3", "10.244.3.0/24", "")} // no address yet
	ev <- client.Event{Type: client.Added, Object: node("n1", "", "192.168.88.1")}
	if m.Ready() {
		t.Fatal("ready without a podCIDR")
	}
	ev <- client.Event{Type: client.Modified, Object: node("n1", "10.244.1.0/24", "192.168.88.1")}
	waitFor(t, "ready", m.Ready)
	waitFor(t, "route to n2", func() bool {
		r := hostRoutes(t, host)
		return len(r) == 1 && r["10.244.2.0/24"] == "192.168.88.2"
	})
	p := newNetNS(t)
	ip, err := m.Setup("pod", p)
	if err != nil || ip.String() != "10.244.1.2" {
		t.Fatalf("setup: %v %v", ip, err)
	}
	ev <- client.Event{Type: client.Modified, Object: node("n3", "10.244.3.0/24", "192.168.88.2")}
	ev <- client.Event{Type: client.Deleted, Object: node("n2", "10.244.2.0/24", "192.168.88.2")}
	waitFor(t, "route to n3 only", func() bool {
		r := hostRoutes(t, host)
		return len(r) == 1 && r["10.244.3.0/24"] == "192.168.88.2"
	})
	close(ev) // the watch ends: the manager watches again

	// A restarted manager has the network at once (pods start offline).
	m2, err := NewManager(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if !m2.Ready() || !m2.Network().PodIP("pod").Equal(ip) {
		t.Fatalf("restarted manager: ready %v, pod IP %v", m2.Ready(), m2.Network().PodIP("pod"))
	}
	if err := m2.ReleaseAllBut(map[string]bool{}); err != nil {
		t.Fatal(err)
	}
	if m2.Network().PodIP("pod") != nil || linkNames(t, p)["eth0"] {
		t.Fatal("stale pod kept its address or link")
	}
	ev = <-w.watches
	ev <- client.Event{Type: client.Added, Object: node("n1", "10.244.1.0/24", "192.168.88.1")}
	if err := m2.Network().Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ipam.json")); err != nil {
		t.Fatal(err)
	}
}
