package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultLink is the name of the dummy link holding the ClusterIPs.
const DefaultLink = "edge-svc"

// DummyLink adds ClusterIPs as /32 (/128) addresses to a dummy link, which
// it creates (up) on first use and deletes on Close. Where the kernel has no
// dummy driver the link is a bridge without ports, which holds local
// addresses the same way.
type DummyLink struct {
	name string
	h    *netlink.Handle
}

// NewDummyLink returns the addresses of link name (DefaultLink if empty)
// handled through h (the current network namespace if nil).
func NewDummyLink(name string, h *netlink.Handle) *DummyLink {
	if name == "" {
		name = DefaultLink
	}
	if h == nil {
		h = &netlink.Handle{}
	}
	return &DummyLink{name: name, h: h}
}

// ensure returns the link, created and up. It is looked up every time, so
// that a link deleted behind the proxy's back is created again.
func (d *DummyLink) ensure() (netlink.Link, error) {
	l, err := d.h.LinkByName(d.name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("link %s: %w", d.name, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = d.name
		err := d.h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		if errors.Is(err, unix.EOPNOTSUPP) {
			// Kernels without the dummy driver: a bridge without ports
			// holds local addresses the same way.
			err = d.h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		}
		if err != nil {
			return nil, fmt.Errorf("add dummy link %s: %w", d.name, err)
		}
		if l, err = d.h.LinkByName(d.name); err != nil {
			return nil, fmt.Errorf("link %s: %w", d.name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := d.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("link %s up: %w", d.name, err)
		}
	}
	return l, nil
}

func hostAddr(ip netip.Addr) *netlink.Addr {
	bits := 32
	if ip.Is6() && !ip.Is4In6() {
		bits = 128
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(ip.AsSlice()), Mask: net.CIDRMask(bits, bits)}}
}

// Add adds ip to the link (no error if it is there already).
func (d *DummyLink) Add(ip netip.Addr) error {
	l, err := d.ensure()
	if err != nil {
		return err
	}
	if err := d.h.AddrReplace(l, hostAddr(ip.Unmap())); err != nil {
		return fmt.Errorf("add %s to %s: %w", ip, d.name, err)
	}
	return nil
}

// Del removes ip from the link (no error if the link is gone).
func (d *DummyLink) Del(ip netip.Addr) error {
	l, err := d.h.LinkByName(d.name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("link %s: %w", d.name, err)
	}
	if err := d.h.AddrDel(l, hostAddr(ip.Unmap())); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("remove %s from %s: %w", ip, d.name, err)
	}
	return nil
}

// Close deletes the link.
func (d *DummyLink) Close() error {
	l, err := d.h.LinkByName(d.name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("link %s: %w", d.name, err)
	}
	if err := d.h.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", d.name, err)
	}
	return nil
}
