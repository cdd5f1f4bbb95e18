// Package podnet wires OCI pods into the node's pod network: a bridge
// (default "edge0") holding the first address of the node's podCIDR as the
// pods' gateway, one veth pair per pod sandbox whose inner end is the pod's
// eth0 with the next free address of the podCIDR and a default route via
// the gateway, and routes to other nodes' podCIDRs via their InternalIP.
package podnet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultBridge is the name of the node's pod bridge.
const DefaultBridge = "edge0"

// routeProtocol marks the routes to other nodes' podCIDRs that podnet
// installs, so stale ones are found again after a restart.
const routeProtocol netlink.RouteProtocol = 0xed

// podIfName is the pod side of the veth pair.
const podIfName = "eth0"

// Config configures a node's pod network.
type Config struct {
	// PodCIDR is the node's pod CIDR (node.spec.podCIDR), e.g. 10.244.1.0/24.
	PodCIDR *net.IPNet
	// StateDir holds the IPAM state (ipam.json).
	StateDir string
	// Bridge is the bridge name (DefaultBridge).
	Bridge string
	// VethPrefix starts the host-side veth names ("veth"); the rest is a
	// hash of the sandbox id.
	VethPrefix string
	// MTU of the bridge and veths (1500).
	MTU int
	// HostNetNS is the path of the namespace the bridge lives in; empty
	// for the agent's own. Tests use a namespace of their own.
	HostNetNS string
	// Forwarding turns on IPv4 forwarding in the host namespace, needed
	// for traffic between nodes.
	Forwarding bool
}

// Network is a node's pod network.
type Network struct {
	cfg    Config
	ipam   *IPAM
	host   *netlink.Handle
	hostNS netns.NsHandle
	mu     sync.Mutex // serialises link changes per network
}

// Route sends a podCIDR of another node via its InternalIP.
type Route struct {
	Dst *net.IPNet
	Via net.IP
}

// New sets up the bridge (creating it if missing) with the gateway address
// and loads the IPAM state.
func New(cfg Config) (*Network, error) {
	if cfg.PodCIDR == nil {
		return nil, errors.New("podnet: pod CIDR required")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("podnet: state dir required")
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if cfg.VethPrefix == "" {
		cfg.VethPrefix = "veth"
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 1500
	}
	ipam, err := NewIPAM(filepath.Join(cfg.StateDir, "ipam.json"), cfg.PodCIDR)
	if err != nil {
		return nil, err
	}
	n := &Network{cfg: cfg, ipam: ipam, hostNS: netns.None()}
	if cfg.HostNetNS != "" {
		ns, err := netns.GetFromPath(cfg.HostNetNS)
		if err != nil {
			return nil, fmt.Errorf("podnet: host namespace: %w", err)
		}
		n.hostNS = ns
		n.host, err = netlink.NewHandleAt(ns)
		if err != nil {
			ns.Close()
			return nil, fmt.Errorf("podnet: netlink: %w", err)
		}
	} else {
		n.host, err = netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("podnet: netlink: %w", err)
		}
	}
	if err := n.ensureBridge(); err != nil {
		n.Close()
		return nil, err
	}
	if cfg.Forwarding {
		if err := n.enableForwarding(); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// Close releases the netlink handles; links and addresses stay.
func (n *Network) Close() {
	if n.host != nil {
		n.host.Close()
	}
	if n.hostNS.IsOpen() {
		n.hostNS.Close()
	}
}

// PodCIDR is the node's pod CIDR.
func (n *Network) PodCIDR() *net.IPNet { return n.ipam.CIDR() }

// Gateway is the bridge address, the pods' default gateway.
func (n *Network) Gateway() net.IP { return n.ipam.Gateway() }

// IPAM exposes the address allocations.
func (n *Network) IPAM() *IPAM { return n.ipam }

func (n *Network) ensureBridge() error {
	link, err := n.host.LinkByName(n.cfg.Bridge)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.cfg.Bridge, MTU: n.cfg.MTU}}
		if err := n.host.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("podnet: create bridge %s: %w", n.cfg.Bridge, err)
		}
		link, err = n.host.LinkByName(n.cfg.Bridge)
	}
	if err != nil {
		return fmt.Errorf("podnet: bridge %s: %w", n.cfg.Bridge, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("podnet: %s exists and is a %s, not a bridge", n.cfg.Bridge, link.Type())
	}
	gw := &net.IPNet{IP: n.Gateway(), Mask: n.PodCIDR().Mask}
	// Addresses of an earlier podCIDR would route pods of the new one
	// wrongly: keep only the gateway.
	addrs, err := dump(func() ([]netlink.Addr, error) { return n.host.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("podnet: bridge addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IPNet.String() != gw.String() {
			if err := n.host.AddrDel(link, &a); err != nil {
				return fmt.Errorf("podnet: remove stale bridge address %s: %w", a.IPNet, err)
			}
		}
	}
	if err := n.host.AddrReplace(link, &netlink.Addr{IPNet: gw}); err != nil {
		return fmt.Errorf("podnet: bridge address %s: %w", gw, err)
	}
	if err := n.host.LinkSetUp(link); err != nil {
		return fmt.Errorf("podnet: bridge up: %w", err)
	}
	return nil
}

// enableForwarding writes net.ipv4.ip_forward in the host namespace
// (/proc/sys/net is per namespace of the opening thread).
func (n *Network) enableForwarding() error {
	return n.inHostNS(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("podnet: enable forwarding: %w", err)
		}
		return nil
	})
}

func (n *Network) inHostNS(fn func() error) error {
	if n.cfg.HostNetNS == "" {
		return fn()
	}
	return InNetNS(n.cfg.HostNetNS, fn)
}

// InNetNS runs fn on a locked OS thread switched into the network
// namespace at path; sockets fn creates live there.
func InNetNS(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and dies with the goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns: %w", err))
			return
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// VethName is the host-side veth name of a sandbox.
func (n *Network) VethName(id string) string {
	sum := sha256.Sum256([]byte(id))
	name := n.cfg.VethPrefix + hex.EncodeToString(sum[:])
	return name[:15] // IFNAMSIZ-1
}

// Setup gives the sandbox id, whose network namespace is at nsPath, an
// address on the pod network and returns it. It is idempotent: a pod that
// is already wired keeps its link and address.
func (n *Network) Setup(id, nsPath string) (net.IP, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ip, err := n.ipam.Allocate(id)
	if err != nil {
		return nil, err
	}
	if err := n.wire(id, nsPath, ip); err != nil {
		return nil, errors.Join(err, n.unwire(id))
	}
	return ip, nil
}

func (n *Network) wire(id, nsPath string, ip net.IP) error {
	podNS, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("podnet: pod netns: %w", err)
	}
	defer podNS.Close()
	pod, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return fmt.Errorf("podnet: netlink in pod netns: %w", err)
	}
	defer pod.Close()
	br, err := n.host.LinkByName(n.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("podnet: bridge %s: %w", n.cfg.Bridge, err)
	}
	addr := &net.IPNet{IP: ip, Mask: n.PodCIDR().Mask}
	hostName := n.VethName(id)
	if n.wired(pod, br, hostName, addr) {
		return nil
	}
	// Half-done wiring of an earlier attempt goes first.
	if err := n.unwire(id); err != nil {
		return err
	}
	if l, err := pod.LinkByName(podIfName); err == nil {
		if err := pod.LinkDel(l); err != nil {
			return fmt.Errorf("podnet: remove stale %s: %w", podIfName, err)
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName, MTU: n.cfg.MTU, MasterIndex: br.Attrs().Index},
		PeerName:      podIfName,
		PeerNamespace: netlink.NsFd(podNS),
		// A MAC derived from the IP (as Kubernetes' bridge plugin does)
		// keeps other pods' ARP entries valid when a pod is wired again.
		PeerHardwareAddr: net.HardwareAddr{0x0a, 0x58, ip[0], ip[1], ip[2], ip[3]},
	}
	if err := n.host.LinkAdd(veth); err != nil {
		return fmt.Errorf("podnet: create veth %s: %w", hostName, err)
	}
	hostLink, err := n.host.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("podnet: veth %s: %w", hostName, err)
	}
	if err := n.host.LinkSetUp(hostLink); err != nil {
		return fmt.Errorf("podnet: veth %s up: %w", hostName, err)
	}
	eth, err := pod.LinkByName(podIfName)
	if err != nil {
		return fmt.Errorf("podnet: pod %s: %w", podIfName, err)
	}
	if err := pod.AddrReplace(eth, &netlink.Addr{IPNet: addr}); err != nil {
		return fmt.Errorf("podnet: pod address %s: %w", addr, err)
	}
	if err := pod.LinkSetUp(eth); err != nil {
		return fmt.Errorf("podnet: pod %s up: %w", podIfName, err)
	}
	if lo, err := pod.LinkByName("lo"); err == nil {
		if err := pod.LinkSetUp(lo); err != nil {
			return fmt.Errorf("podnet: pod lo up: %w", err)
		}
	}
	def := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: n.Gateway(), Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := pod.RouteReplace(def); err != nil {
		return fmt.Errorf("podnet: pod default route: %w", err)
	}
	return nil
}

// wired reports whether the pod already has its veth on the bridge and
// its address and default route.
func (n *Network) wired(pod *netlink.Handle, br netlink.Link, hostName string, addr *net.IPNet) bool {
	hl, err := n.host.LinkByName(hostName)
	if err != nil || hl.Attrs().MasterIndex != br.Attrs().Index || hl.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	eth, err := pod.LinkByName(podIfName)
	if err != nil || eth.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	addrs, err := dump(func() ([]netlink.Addr, error) { return pod.AddrList(eth, netlink.FAMILY_V4) })
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IPNet.String() == addr.String() {
			routes, err := dump(func() ([]netlink.Route, error) { return pod.RouteList(eth, netlink.FAMILY_V4) })
			if err != nil {
				return false
			}
			for _, r := range routes {
				if r.Gw.Equal(n.Gateway()) && (r.Dst == nil || r.Dst.IP.IsUnspecified()) {
					return true
				}
			}
		}
	}
	return false
}

func (n *Network) unwire(id string) error {
	l, err := n.host.LinkByName(n.VethName(id))
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("podnet: veth of %s: %w", id, err)
	}
	if err := n.host.LinkDel(l); err != nil {
		return fmt.Errorf("podnet: delete veth %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// Teardown removes the sandbox's veth pair and frees its address. Call it
// before the sandbox (and its namespace) is removed; tearing down a pod
// that has no network succeeds.
func (n *Network) Teardown(id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.unwire(id); err != nil {
		return err
	}
	return n.ipam.Release(id)
}

// PodIP is the address allocated to the sandbox, or nil.
func (n *Network) PodIP(id string) net.IP { return n.ipam.Get(id) }

// SyncRoutes makes the routes podnet installed in the host namespace
// exactly routes: missing ones are added, changed ones replaced, others
// removed. Routes to the node's own podCIDR are skipped.
func (n *Network) SyncRoutes(routes []Route) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	want := map[string]Route{}
	for _, r := range routes {
		if r.Dst == nil || r.Via == nil || r.Dst.String() == n.PodCIDR().String() {
			continue
		}
		want[r.Dst.String()] = r
	}
	have, err := dump(func() ([]netlink.Route, error) {
		return n.host.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return fmt.Errorf("podnet: list routes: %w", err)
	}
	var errs []error
	for _, h := range have {
		if h.Dst == nil {
			continue
		}
		if w, ok := want[h.Dst.String()]; ok && w.Via.Equal(h.Gw) {
			delete(want, h.Dst.String())
			continue
		}
		if _, ok := want[h.Dst.String()]; ok {
			continue // replaced below
		}
		if err := n.host.RouteDel(&h); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("podnet: delete route %s: %w", h.Dst, err))
		}
	}
	for _, r := range want {
		rt := &netlink.Route{Dst: r.Dst, Gw: r.Via, Protocol: routeProtocol}
		if err := n.host.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("podnet: route %s via %s: %w", r.Dst, r.Via, err))
		}
	}
	return errors.Join(errs...)
}

// Destroy removes the bridge and every route podnet installed; the IPAM
// state file stays. For tests and node decommissioning.
func (n *Network) Destroy() error {
	var errs []error
	if err := n.SyncRoutes(nil); err != nil {
		errs = append(errs, err)
	}
	if l, err := n.host.LinkByName(n.cfg.Bridge); err == nil {
		if err := n.host.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("podnet: delete bridge: %w", err))
		}
	}
	return errors.Join(errs...)
}

// dumpAttempts bounds the reads of one netlink dump. The kernel marks a dump
// interrupted (NLM_F_DUMP_INTR) when the table changed while it was read,
// e.g. another pod's veth coming or going; netlink then returns what it got
// with ErrDumpInterrupted, possibly incomplete, so it is read again.
const dumpAttempts = 10

func dump[T any](list func() ([]T, error)) ([]T, error) {
	for i := 1; ; i++ {
		out, err := list()
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < dumpAttempts {
			continue
		}
		return out, err
	}
}
