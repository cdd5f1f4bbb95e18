package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// tcpBackend answers each line with "name:line" and counts connections.
type tcpBackend struct {
	name  string
	ln    net.Listener
	conns atomic.Int64
}

func startTCPBackend(t *testing.T, listen func(string, string) (net.Listener, error), name string) *tcpBackend {
	t.Helper()
	ln, err := listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tcpBackend{name: name, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s:%s", name, line)
				}
			}()
		}
	}()
	return b
}

func (b *tcpBackend) port() int { return b.ln.Addr().(*net.TCPAddr).Port }

// deadPort returns a port nobody listens on.
func deadPort(t *testing.T, listen func(string, string) (net.Listener, error)) int {
	ln, err := listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dialClient(t *testing.T, dial func(context.Context, string, string) (net.Conn, error), addr string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

func (c *client) ask(t *testing.T, msg string) string {
	t.Helper()
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c.c, "%s\n", msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return line[:len(line)-1]
}

func addrsOf(t *testing.T, h *netlink.Handle, link string) []string {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("link %s: %v", link, err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out
}

func TestTCPRoundRobinInNetns(t *testing.T) {
	n := newTestNS(t)
	a := startTCPBackend(t, n.listen, "a")
	b := startTCPBackend(t, n.listen, "b")
	unready := startTCPBackend(t, n.listen, "unready")
	dead := deadPort(t, n.listen)
	_ = unready

	p := New(n.config("edge-svc-t1"))
	defer p.Close()
	svc := Service{Namespace: "default", Name: "web", Type: TypeClusterIP, ClusterIP: "10.96.0.10",
		Ports: []ServicePort{{Name: "http", Port: 80}}}
	// Every address listens on a different port: one subset each.
	ep := Endpoints{Namespace: "default", Name: "web", Subsets: []Subset{
		{Addresses: []string{"127.0.0.1"}, Ports: []EndpointPort{{Name: "http", Port: a.port()}}},
		{Addresses: []string{"127.0.0.1"}, Ports: []EndpointPort{{Name: "http", Port: dead}}},
		{Addresses: []string{"127.0.0.1"}, Ports: []EndpointPort{{Name: "http", Port: b.port()}}},
		{NotReadyAddresses: []string{"127.0.0.1"}, Ports: []EndpointPort{{Name: "http", Port: unready.port()}}},
	}}
	if err := p.Update(Snapshot{Services: []Service{svc}, Endpoints: []Endpoints{ep}}); err != nil {
		t.Fatal(err)
	}
	if got := addrsOf(t, n.h, "edge-svc-t1"); len(got) != 1 || got[0] != "10.96.0.10/32" {
		t.Fatalf("link addresses = %v, want [10.96.0.10/32]", got)
	}
	counts := map[string]int{}
	var long *client
	for i := range 6 {
		c := dialClient(t, n.dial, "10.96.0.10:80")
		reply := c.ask(t, "hi")
		counts[reply]++
		if i == 0 {
			long = c
		} else {
			c.c.Close()
		}
	}
	// Round robin over [a, dead, b]: a; dead→b; b; a; dead→b; b.
	if counts["a:hi"] != 2 || counts["b:hi"] != 4 || len(counts) != 2 {
		t.Fatalf("replies = %v, want 2 from a and 4 from b", counts)
	}
	if unready.conns.Load() != 0 {
		t.Fatalf("unready endpoint got %d connections", unready.conns.Load())
	}

	// Endpoints change: only b. The open connection (to a) keeps working.
	ep.Subsets = ep.Subsets[2:3]
	if err := p.Update(Snapshot{Services: []Service{svc}, Endpoints: []Endpoints{ep}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c := dialClient(t, n.dial, "10.96.0.10:80")
		if got := c.ask(t, "x"); got != "b:x" {
			t.Fatalf("after update got %q, want b:x", got)
		}
		c.c.Close()
	}
	first := long.ask(t, "still")
	if first != "a:still" && first != "b:still" {
		t.Fatalf("existing connection: %q", first)
	}

	// Half-close: the client closes its write side and still reads the reply.
	c := dialClient(t, n.dial, "10.96.0.10:80")
	fmt.Fprintf(c.c, "bye\n")
	c.c.(*net.TCPConn).CloseWrite()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil || string(rest) != "b:bye\n" {
		t.Fatalf("after half-close read %q, %v", rest, err)
	}

	// The service goes: listener closed, address removed.
	if err := p.Update(Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if got := addrsOf(t, n.h, "edge-svc-t1"); len(got) != 0 {
		t.Fatalf("link addresses after delete = %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := n.dial(ctx, "tcp", "10.96.0.10:80"); err == nil {
		c.Close()
		t.Fatal("dial after service removal succeeded")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.h.LinkByName("edge-svc-t1"); err == nil {
		t.Fatal("link still there after Close")
	}
}

func TestNoReadyEndpointsClosesConnection(t *testing.T) {
	n := newTestNS(t)
	p := New(n.config("edge-svc-t2"))
	defer p.Close()
	svc := Service{Namespace: "default", Name: "none", ClusterIP: "10.96.0.11", Ports: []ServicePort{{Port: 80}}}
	if err := p.Update(Snapshot{Services: []Service{svc}}); err != nil {
		t.Fatal(err)
	}
	c := dialClient(t, n.dial, "10.96.0.11:80")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("read = %v, want EOF", err)
	}
}

func TestUDPEchoInNetns(t *testing.T) {
	n := newTestNS(t)
	pc, err := n.listenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// The echo server tells which proxy socket (session) a datagram came from.
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.String()+" "+string(buf[:k])), from)
		}
	}()
	cfg := n.config("edge-svc-t3")
	cfg.UDPIdleTimeout = 500 * time.Millisecond
	p := New(cfg)
	defer p.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	svc := Service{Namespace: "kube-system", Name: "dns", ClusterIP: "10.96.0.53",
		Ports: []ServicePort{{Name: "dns", Protocol: "UDP", Port: 53}}}
	ep := Endpoints{Namespace: "kube-system", Name: "dns", Subsets: []Subset{{
		Addresses: []string{"127.0.0.1"}, Ports: []EndpointPort{{Name: "dns", Protocol: "UDP", Port: port}}}}}
	if err := p.Update(Snapshot{Services: []Service{svc}, Endpoints: []Endpoints{ep}}); err != nil {
		t.Fatal(err)
	}
	// Two clients get their own sessions; a session lasts while used and a
	// new one starts after the idle timeout.
	exchange := func(c net.Conn, msg string) (session string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 200)
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		session, got, _ := strings.Cut(string(buf[:k]), " ")
		if got != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
		return session
	}
	var clients []net.Conn
	for range 2 {
		c, err := n.dial(context.Background(), "udp", "10.96.0.53:53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	s0 := exchange(clients[0], "a1")
	s1 := exchange(clients[1], "b1")
	if s0 == s1 {
		t.Fatalf("two clients share session %s", s0)
	}
	if s := exchange(clients[0], "a2"); s != s0 {
		t.Fatalf("session changed within the idle timeout: %s, then %s", s0, s)
	}
	time.Sleep(cfg.UDPIdleTimeout + 300*time.Millisecond) // the idle timeout itself is under test
	if s := exchange(clients[0], "a3"); s == s0 {
		t.Fatalf("session %s still used after the idle timeout", s)
	}
}

func TestNodePortOnLoopback(t *testing.T) {
	listen := net.Listen
	a := startTCPBackend(t, listen, "a")
	np := deadPort(t, listen)
	cp := deadPort(t, listen)
	p := New(Config{NodeAddress: "127.0.0.1"})
	defer p.Close()
	svc := Service{Namespace: "default", Name: "np", Type: TypeNodePort, ClusterIP: "127.0.0.1",
		Ports: []ServicePort{{Port: cp, NodePort: np}}}
	ep := Endpoints{Namespace: "default", Name: "np", Subsets: []Subset{{
		Addresses: []string{"127.0.0.1"}, Ports: []EndpointPort{{Port: a.port()}}}}}
	if err := p.Update(Snapshot{Services: []Service{svc}, Endpoints: []Endpoints{ep}}); err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	for _, port := range []int{np, cp} {
		c := dialClient(t, d.DialContext, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if got := c.ask(t, "np"); got != "a:np" {
			t.Fatalf("port %d: got %q", port, got)
		}
	}
}
