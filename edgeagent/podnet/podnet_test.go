package podnet

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("podnet tests need root (network namespaces, veths, bridges)")
	}
}

func randName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// newNetNS makes a network namespace for the test (loopback up) and
// returns a path to it; it is released at cleanup.
func newNetNS(t *testing.T) string {
	t.Helper()
	type res struct {
		h   netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- res{err: err}
			return
		}
		defer orig.Close()
		h, err := netns.New()
		if err != nil {
			c <- res{err: err}
			return
		}
		if lo, err := netlink.LinkByName("lo"); err == nil {
			err = netlink.LinkSetUp(lo)
			if err != nil {
				c <- res{err: err}
				return
			}
		}
		if err := netns.Set(orig); err != nil {
			c <- res{err: err} // thread stays locked and exits
			return
		}
		goruntime.UnlockOSThread()
		c <- res{h: h}
	}()
	r := <-c
	if r.err != nil {
		t.Fatalf("new netns: %v", r.err)
	}
	t.Cleanup(func() { r.h.Close() })
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(r.h))
}

func newNetwork(t *testing.T, hostNS, cidr string) *Network {
	t.Helper()
	n, err := New(Config{
		PodCIDR: mustCIDR(t, cidr), StateDir: t.TempDir(), Bridge: randName(t, "et"),
		VethPrefix: "vt", HostNetNS: hostNS, Forwarding: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Destroy(); err != nil {
			t.Error(err)
		}
		n.Close()
	})
	return n
}

// serveEcho listens on port in the namespace and echoes one line per
// connection, prefixed with "echo:".
func serveEcho(t *testing.T, nsPath string, port int) {
	t.Helper()
	var ln net.Listener
	err := InNetNS(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					io.WriteString(c, "echo:"+line)
				}
			}()
		}
	}()
}

// roundTrip dials addr from inside the namespace and sends a line.
func roundTrip(nsPath, addr string) (string, error) {
	var conn net.Conn
	err := InNetNS(nsPath, func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(conn, "hello\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
}

func expectEcho(t *testing.T, from, addr string) {
	t.Helper()
	got, err := roundTrip(from, addr)
	if err != nil || got != "echo:hello\n" {
		t.Fatalf("round trip to %s: %q %v", addr, got, err)
	}
}

func linkNames(t *testing.T, nsPath string) map[string]bool {
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
	links, err := dump(nl.LinkList)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range links {
		out[l.Attrs().Name] = true
	}
	return out
}

func TestTwoPodsOneNode(t *testing.T) {
	needRoot(t)
	host := newNetNS(t)
	n := newNetwork(t, host, "10.244.7.0/24")
	p1, p2 := newNetNS(t), newNetNS(t)

	ip1, err := n.Setup("sandbox-1", p1)
	if err != nil {
		t.Fatal(err)
	}
	ip2, err := n.Setup("sandbox-2", p2)
	if err != nil {
		t.Fatal(err)
	}
	if ip1.Equal(ip2) || !n.PodCIDR().Contains(ip1) || !n.PodCIDR().Contains(ip2) || ip1.Equal(n.Gateway()) || ip2.Equal(n.Gateway()) {
		t.Fatalf("pod IPs %s %s in %s (gateway %s)", ip1, ip2, n.PodCIDR(), n.Gateway())
	}
	// Setup is idempotent.
	again, err := n.Setup("sandbox-1", p1)
	if err != nil || !again.Equal(ip1) {
		t.Fatalf("setup again: %v %v", again, err)
	}

	serveEcho(t, p2, 8080)
	serveEcho(t, p1, 8081)
	expectEcho(t, p1, net.JoinHostPort(ip2.String(), "8080"))
	expectEcho(t, p2, net.JoinHostPort(ip1.String(), "8081"))
	// The node reaches its pods through the bridge.
	expectEcho(t, host, net.JoinHostPort(ip2.String(), "8080"))

	// A pod whose eth0 was lost (half-torn state) is wired again.
	h, _ := netns.GetFromPath(p1)
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	eth, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkDel(eth); err != nil {
		t.Fatal(err)
	}
	nl.Close()
	h.Close()
	if _, err := roundTrip(p2, net.JoinHostPort(ip1.String(), "8081")); err == nil {
		t.Fatal("reached a pod without eth0")
	}
	if re, err := n.Setup("sandbox-1", p1); err != nil || !re.Equal(ip1) {
		t.Fatalf("rewire: %v %v", re, err)
	}
	expectEcho(t, p2, net.JoinHostPort(ip1.String(), "8081"))

	for _, id := range []string{"sandbox-1", "sandbox-2"} {
		if err := n.Teardown(id); err != nil {
			t.Fatal(err)
		}
		if err := n.Teardown(id); err != nil {
			t.Fatalf("second teardown: %v", err)
		}
	}
	hostLinks := linkNames(t, host)
	for name := range hostLinks {
		if name != "lo" && name != n.cfg.Bridge {
			t.Errorf("link %s left in the host namespace", name)
		}
	}
	for _, p := range []string{p1, p2} {
		if links := linkNames(t, p); links["eth0"] {
			t.Errorf("eth0 left in pod namespace %s", p)
		}
	}
	if got := n.IPAM().Allocated(); len(got) != 0 {
		t.Errorf("addresses still allocated: %v", got)
	}
	if _, err := roundTrip(p1, net.JoinHostPort(ip2.String(), "8080")); err == nil {
		t.Error("pods still reach each other after teardown")
	}
	if err := n.Destroy(); err != nil {
		t.Fatal(err)
	}
	if linkNames(t, host)[n.cfg.Bridge] {
		t.Error("bridge left after Destroy")
	}
}

func TestRestartKeepsPods(t *testing.T) {
	needRoot(t)
	host := newNetNS(t)
	dir := t.TempDir()
	bridge := randName(t, "et")
	cfg := Config{PodCIDR: mustCIDR(t, "10.244.8.0/24"), StateDir: dir, Bridge: bridge, HostNetNS: host}
	n1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := newNetNS(t), newNetNS(t)
	ip1, err := n1.Setup("s1", p1)
	if err != nil {
		t.Fatal(err)
	}
	n1.Close()

	// A restarted agent keeps the pod's address and link, and gives the
	// next pod another address.
	n2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	defer n2.Destroy()
	if got := n2.PodIP("s1"); !got.Equal(ip1) {
		t.Fatalf("after restart s1 has %v, want %s", got, ip1)
	}
	ip2, err := n2.Setup("s2", p2)
	if err != nil {
		t.Fatal(err)
	}
	if ip2.Equal(ip1) {
		t.Fatalf("restart reused %s", ip1)
	}
	again, err := n2.Setup("s1", p1)
	if err != nil || !again.Equal(ip1) {
		t.Fatalf("setup after restart: %v %v", again, err)
	}
	serveEcho(t, p1, 9000)
	expectEcho(t, p2, net.JoinHostPort(ip1.String(), "9000"))
	for _, id := range []string{"s1", "s2"} {
		if err := n2.Teardown(id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTwoNodes routes between the podCIDRs of two "nodes" (namespaces
// joined by a veth pair, like hosts on one LAN).
func TestTwoNodes(t *testing.T) {
	needRoot(t)
	hostA, hostB := newNetNS(t), newNetNS(t)
	addrA, addrB := net.IPv4(192, 168, 77, 1).To4(), net.IPv4(192, 168, 77, 2).To4()
	linkHosts(t, hostA, hostB, addrA, addrB)
	na := newNetwork(t, hostA, "10.244.1.0/24")
	nb := newNetwork(t, hostB, "10.244.2.0/24")
	pa, pb := newNetNS(t), newNetNS(t)
	ipA, err := na.Setup("a", pa)
	if err != nil {
		t.Fatal(err)
	}
	ipB, err := nb.Setup("b", pb)
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, pb, 8080)
	if _, err := roundTrip(pa, net.JoinHostPort(ipB.String(), "8080")); err == nil {
		t.Fatal("reached the other node's pod without routes")
	}
	routes := []Route{{Dst: na.PodCIDR(), Via: addrA}, {Dst: nb.PodCIDR(), Via: addrB}}
	if err := na.SyncRoutes(routes); err != nil {
		t.Fatal(err)
	}
	if err := nb.SyncRoutes(routes); err != nil {
		t.Fatal(err)
	}
	if err := nb.SyncRoutes(routes); err != nil {
		t.Fatalf("sync again: %v", err)
	}
	expectEcho(t, pa, net.JoinHostPort(ipB.String(), "8080"))
	serveEcho(t, pa, 8081)
	expectEcho(t, pb, net.JoinHostPort(ipA.String(), "8081"))

	// Removing the other node removes its route.
	if err := na.SyncRoutes([]Route{{Dst: na.PodCIDR(), Via: addrA}}); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(pa, net.JoinHostPort(ipB.String(), "8080")); err == nil {
		t.Fatal("route to the removed node stayed")
	}
	if err := errors.Join(na.Teardown("a"), nb.Teardown("b")); err != nil {
		t.Fatal(err)
	}
}

func linkHosts(t *testing.T, a, b string, ipA, ipB net.IP) {
	t.Helper()
	ha, err := netns.GetFromPath(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := netns.GetFromPath(b)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	nla, err := netlink.NewHandleAt(ha)
	if err != nil {
		t.Fatal(err)
	}
	defer nla.Close()
	nlb, err := netlink.NewHandleAt(hb)
	if err != nil {
		t.Fatal(err)
	}
	defer nlb.Close()
	if err := nla.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan0", PeerNamespace: netlink.NsFd(hb)}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		nl *netlink.Handle
		ip net.IP
	}{{nla, ipA}, {nlb, ipB}} {
		l, err := x.nl.LinkByName("lan0")
		if err != nil {
			t.Fatal(err)
		}
		if err := x.nl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: x.ip, Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := x.nl.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}
