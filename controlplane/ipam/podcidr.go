package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
)

// DefaultClusterCIDR is the default range node pod CIDRs are cut from
// (16,384 nodes of /24: fleets are large; clear of the service CIDR),
// and DefaultNodeMaskSize the default size of one node's pod CIDR.
const (
	DefaultClusterCIDR  = "10.128.0.0/10"
	DefaultNodeMaskSize = 24
)

// PodCIDRs cuts per-node pod CIDRs out of a cluster CIDR.
type PodCIDRs struct {
	c       claims
	cluster netip.Prefix
	bits    int
	// next is the index of the subnet after the last one allocated: the
	// next scan starts there (and wraps), so an allocation does not walk
	// every claimed subnet from the first. Each claim is a round trip to
	// the leases bucket, which 10,000 nodes' heartbeats keep busy; claims
	// of nodes whose Node does not show them yet (or left by a timed-out
	// attempt) made every scan from the first subnet outlast its deadline.
	mu   sync.Mutex
	next uint32
}

// NewPodCIDRs returns an allocator of /maskSize subnets of cluster, with
// claims written in kv (the leases bucket).
func NewPodCIDRs(kv KV, cluster string, maskSize int) (*PodCIDRs, error) {
	p, err := parseCIDR(cluster, 30)
	if err != nil {
		return nil, fmt.Errorf("cluster CIDR: %w", err)
	}
	if maskSize < p.Bits() || maskSize > 30 {
		return nil, fmt.Errorf("node mask size /%d: want between /%d and /30", maskSize, p.Bits())
	}
	return &PodCIDRs{c: claims{kv: kv, stale: DefaultStaleAfter, now: time.Now}, cluster: p, bits: maskSize}, nil
}

// Cluster returns the cluster CIDR.
func (a *PodCIDRs) Cluster() netip.Prefix { return a.cluster }

// Allocate claims the next subnet (from the one after the last allocated,
// wrapping) that is neither used (a pod CIDR of a known node)
// nor claimed by another node, for node. holds
// reports whether a node holds a CIDR now (it exists and has it); a stale
// claim of a node that does not is taken over.
func (a *PodCIDRs) Allocate(ctx context.Context, node string, used func(cidr string) bool, holds func(ctx context.Context, node, cidr string) (bool, error)) (string, error) {
	step := uint32(1) << (32 - a.bits)
	b := a.cluster.Addr().As4()
	base := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	count := uint32(1) << (a.bits - a.cluster.Bits())
	a.mu.Lock()
	start := a.next
	a.mu.Unlock()
	for n := range count {
		i := (start + n) % count
		v := base + i*step
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), a.bits).String()
		if used(cidr) {
			continue
		}
		ok, err := a.c.claim(ctx, messaging.PodCIDRClaimKey(cidr), node, func(ctx context.Context, holder string) (bool, error) {
			return holds(ctx, holder, cidr)
		})
		if err != nil {
			return "", err
		}
		if ok {
			a.mu.Lock()
			a.next = (i + 1) % count
			a.mu.Unlock()
			return cidr, nil
		}
	}
	return "", fmt.Errorf("no free /%d left in cluster CIDR %s", a.bits, a.cluster)
}

// Release releases node's claim on cidr.
func (a *PodCIDRs) Release(ctx context.Context, node, cidr string) error {
	return a.c.release(ctx, messaging.PodCIDRClaimKey(cidr), node)
}
