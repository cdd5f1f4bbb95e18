package edgeagent

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/nats-io/nats.go"
	"github.com/vishvananda/netlink"
)

// freePort returns a port free for network on 127.0.0.1. For "dns" the port
// is free for UDP and TCP both, and below the kernel's ephemeral range
// (32768 on), so no outgoing connection of the test takes it before the
// agent binds it.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "dns" {
		for range 1000 {
			port := 20000 + rand.IntN(12000)
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				continue
			}
			ln, err := net.Listen("tcp", addr)
			pc.Close()
			if err != nil {
				continue
			}
			ln.Close()
			return port
		}
		t.Fatal("no port free for both UDP and TCP in 20000-31999")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "ping\n")
	return bufio.NewReader(c).ReadString('\n')
}

// TestServiceProxyAndDNS runs an agent with the service proxy and DNS
// against a control plane holding a Service and its Endpoints. The
// ClusterIP is a loopback address so that no traffic leaves loopback; the
// link is a uniquely named one of the test's own.
func TestServiceProxyAndDNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("test needs root (netlink)")
	}
	cp := startControlPlane(t)
	ctx := ctxT(t)
	link := fmt.Sprintf("eysvc%d", os.Getpid()%100000)
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(link); err == nil {
			netlink.LinkDel(l)
			t.Errorf("link %s left behind", link)
		}
	})

	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					fmt.Fprintf(c, "pong\n")
				}
			}()
		}
	}()
	svcPort := freePort(t, "tcp")
	nodePort := 30000 + freePort(t, "tcp")%2700
	svc := &manifests.Service{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"}}
	svc.Kind, svc.APIVersion = "Service", "v1"
	svc.Spec = manifests.ServiceSpec{Type: manifests.ServiceTypeNodePort, ClusterIP: "127.0.0.77",
		Ports: []manifests.ServicePort{{Port: int32(svcPort), NodePort: int32(nodePort), Protocol: "TCP"}}}
	if _, _, err := cp.cl.Apply(ctx, svc); err != nil {
		t.Fatal(err)
	}
	ep := &manifests.Endpoints{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"},
		Subsets: []manifests.EndpointSubset{{
			Addresses: []manifests.EndpointAddress{{IP: "127.0.0.1"}},
			Ports:     []manifests.EndpointPort{{Port: int32(backend.Addr().(*net.TCPAddr).Port), Protocol: "TCP"}},
		}}}
	ep.Kind, ep.APIVersion = "Endpoints", "v1"
	if _, _, err := cp.cl.Apply(ctx, ep); err != nil {
		t.Fatal(err)
	}

	dnsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "dns")))
	nc, err := nats.Connect(cp.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(actx, nc, Config{
			NodeName: "node-svc", DataDir: t.TempDir(), Address: "127.0.0.1",
			HeartbeatInterval: 200 * time.Millisecond,
			Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			ServiceProxy:      true, ServiceLink: link, DNSAddr: dnsAddr,
		})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		}
	}
	defer stop()

	clusterAddr := net.JoinHostPort("127.0.0.77", strconv.Itoa(svcPort))
	nodeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(nodePort))
	eventually(t, 10*time.Second, func() error {
		for _, a := range []string{clusterAddr, nodeAddr} {
			if got, err := ask(a); err != nil || got != "pong\n" {
				return fmt.Errorf("%s: %q, %v", a, got, err)
			}
		}
		return nil
	})
	l, err := netlink.LinkByName(link)
	if err != nil {
		t.Fatalf("link %s: %v", link, err)
	}
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "127.0.0.77/32" {
		t.Errorf("link addresses = %v", addrs)
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dnsAddr)
	}}
	eventually(t, 10*time.Second, func() error {
		got, err := r.LookupHost(ctx, "web.default.svc.cluster.local.")
		if err != nil || !slices.Equal(got, []string{"127.0.0.77"}) {
			return fmt.Errorf("lookup: %v, %v", got, err)
		}
		return nil
	})

	// The service goes: its listeners and its address go too.
	if _, err := cp.cl.Delete(ctx, "services", "default", "web"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if _, err := ask(nodeAddr); err == nil {
			return fmt.Errorf("node port still answers")
		}
		if as, _ := netlink.AddrList(l, netlink.FAMILY_V4); len(as) != 0 {
			return fmt.Errorf("addresses left: %v", as)
		}
		return nil
	})
	stop()
	if _, err := netlink.LinkByName(link); err == nil {
		t.Errorf("link %s still there after the agent stopped", link)
	}
}
