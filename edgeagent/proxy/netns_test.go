package proxy

import (
	"context"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testNS is a network namespace created for one test, with lo up.
type testNS struct {
	ns netns.NsHandle
	h  *netlink.Handle
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("test needs root (network namespaces)")
	}
	type res struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- res{err: err}
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			ch <- res{err: err}
			runtime.UnlockOSThread()
			return
		}
		if err := netns.Set(orig); err != nil {
			ch <- res{err: err}
			return // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		ch <- res{ns: ns}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("new netns: %v", r.err)
	}
	h, err := netlink.NewHandleAt(r.ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	n := &testNS{ns: r.ns, h: h}
	t.Cleanup(func() {
		h.Close()
		r.ns.Close()
	})
	return n
}

// do runs f on an OS thread switched into the namespace.
func (n *testNS) do(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.ns); err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- ferr
	}()
	return <-ch
}

func (n *testNS) listen(network, addr string) (l net.Listener, err error) {
	err = n.do(func() error { l, err = net.Listen(network, addr); return err })
	return l, err
}

func (n *testNS) listenPacket(network, addr string) (pc net.PacketConn, err error) {
	err = n.do(func() error { pc, err = net.ListenPacket(network, addr); return err })
	return pc, err
}

func (n *testNS) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = n.do(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// config is a proxy Config whose sockets and ClusterIPs live in n.
func (n *testNS) config(link string) Config {
	return Config{
		NodeAddress:  "127.0.0.1",
		Addresses:    NewDummyLink(link, n.h),
		Listen:       n.listen,
		ListenPacket: n.listenPacket,
		Dial:         n.dial,
	}
}
