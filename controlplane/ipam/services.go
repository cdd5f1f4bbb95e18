package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// DefaultServiceCIDR is the default range of Service cluster IPs.
const DefaultServiceCIDR = "10.96.0.0/16"

// Store is the part of the object store the allocators read.
type Store interface {
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	List(ctx context.Context, resource, namespace string, sel manifests.Selector) ([]manifests.Object, uint64, error)
}

// Services allocates Service cluster IPs from a CIDR and node ports from
// manifests.MinNodePort..MaxNodePort.
type Services struct {
	c    claims
	st   Store
	cidr netip.Prefix

	// view holds the addresses of every service by owner, from a listing
	// of the store no older than viewTTL kept up to date with this
	// allocator's own allocations, so that a burst of creates (an apply of
	// 100 Services) lists the services once, not once each (which made
	// each create's cost grow with the services stored). Allocations by
	// other API processes since the listing are not in it: their claims
	// turn this one's attempts on the same addresses down.
	mu     sync.Mutex
	view   map[string]*manifests.Service
	viewAt time.Time
}

// viewTTL is how long a listing of the services serves allocations.
const viewTTL = 5 * time.Second

// NewServices returns an allocator of cluster IPs from cidr (an IPv4
// prefix such as 10.96.0.0/16), with claims written in kv (the leases
// bucket) and the services read from st.
func NewServices(kv KV, st Store, cidr string) (*Services, error) {
	p, err := parseCIDR(cidr, 30)
	if err != nil {
		return nil, fmt.Errorf("service CIDR: %w", err)
	}
	return &Services{c: claims{kv: kv, stale: DefaultStaleAfter, now: time.Now}, st: st, cidr: p}, nil
}

// CIDR returns the range of cluster IPs.
func (s *Services) CIDR() netip.Prefix { return s.cidr }

func parseCIDR(cidr string, maxBits int) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return p, fmt.Errorf("%q: %w", cidr, err)
	}
	if !p.Addr().Is4() || p.Bits() > maxBits {
		return p, fmt.Errorf("%q: want an IPv4 prefix of at most /%d", cidr, maxBits)
	}
	return p.Masked(), nil
}

// Allocation is what one Allocate claimed. After the service is written,
// Commit releases what the previous version held and this one does not;
// if the write fails, Undo releases what this call claimed.
type Allocation struct {
	s       *Services
	owner   string
	old     *manifests.Service
	claimed []string
	drop    []string
}

// Commit releases the claims the service no longer needs.
func (a *Allocation) Commit(ctx context.Context) error {
	for _, k := range a.drop {
		if err := a.s.c.release(ctx, k, a.owner); err != nil {
			return err
		}
	}
	return nil
}

// Undo releases the claims this allocation made, except those the stored
// service of the same name holds (another API process created it with the
// same addresses while this write failed).
func (a *Allocation) Undo(ctx context.Context) error {
	if len(a.claimed) == 0 {
		a.s.setView(a.owner, a.old)
		return nil
	}
	cur, err := a.s.holder(ctx, a.owner)
	if err != nil {
		return err
	}
	a.s.setView(a.owner, cur)
	keep := map[string]bool{}
	for _, k := range keys(cur) {
		keep[k] = true
	}
	for _, k := range a.claimed {
		if keep[k] {
			continue
		}
		if err := a.s.c.release(ctx, k, a.owner); err != nil {
			return err
		}
	}
	return nil
}

// services returns the services but except's, from the view (listing the
// store when fresh, or when the view is missing or older than viewTTL).
func (s *Services) services(ctx context.Context, except string, fresh bool) ([]*manifests.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fresh || s.view == nil || s.c.now().Sub(s.viewAt) > viewTTL {
		at := s.c.now()
		objs, _, err := s.st.List(ctx, "services", "", manifests.Selector{})
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		s.view = make(map[string]*manifests.Service, len(objs))
		for _, o := range objs {
			if x, ok := o.(*manifests.Service); ok {
				s.view[owner(x)] = addresses(x)
			}
		}
		s.viewAt = at
	}
	out := make([]*manifests.Service, 0, len(s.view))
	for o, x := range s.view {
		if o != except {
			out = append(out, x)
		}
	}
	return out, nil
}

// setView records the addresses svc (nil: none) holds for holder.
func (s *Services) setView(holder string, svc *manifests.Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.view == nil {
		return
	}
	if svc == nil {
		delete(s.view, holder)
		return
	}
	s.view[holder] = addresses(svc)
}

// addresses is the part of svc the allocators read.
func addresses(svc *manifests.Service) *manifests.Service {
	x := &manifests.Service{}
	x.Namespace, x.Name = svc.Namespace, svc.Name
	x.Spec.Type, x.Spec.ClusterIP = svc.Spec.Type, svc.Spec.ClusterIP
	for _, p := range svc.Spec.Ports {
		x.Spec.Ports = append(x.Spec.Ports, manifests.ServicePort{NodePort: p.NodePort})
	}
	return x
}

func owner(svc *manifests.Service) string { return svc.Namespace + "/" + svc.Name }

// keys are the claim keys the service holds.
func keys(svc *manifests.Service) []string {
	if svc == nil {
		return nil
	}
	var out []string
	if ip := svc.Spec.ClusterIP; ip != "" && ip != manifests.ClusterIPNone && svc.Spec.Type != manifests.ServiceTypeExternalName {
		out = append(out, messaging.ClusterIPClaimKey(ip))
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			out = append(out, messaging.NodePortClaimKey(p.NodePort))
		}
	}
	return out
}

// Allocate fills svc's cluster IP and node ports: those of old (the stored
// version, nil on create) are kept when svc leaves them empty, requested
// ones are checked and claimed, missing ones are allocated. A request that
// cannot be met is a manifests.FieldErrors.
func (s *Services) Allocate(ctx context.Context, svc, old *manifests.Service) (_ *Allocation, err error) {
	a := &Allocation{s: s, owner: owner(svc), old: old}
	defer func() {
		if err != nil {
			_ = a.Undo(context.WithoutCancel(ctx))
		}
	}()
	held := map[string]bool{}
	for _, k := range keys(old) {
		held[k] = true
	}
	var all []*manifests.Service
	listed, listedFresh := false, false
	// list returns the other services' addresses; fresh asks for a
	// listing of the store, not the view: an address a request names is
	// checked against every stored service, including one written
	// without a claim since the view's listing (by a process before this
	// allocator existed).
	list := func(fresh bool) ([]*manifests.Service, error) {
		if listed && (listedFresh || !fresh) {
			return all, nil
		}
		var err error
		if all, err = s.services(ctx, a.owner, fresh); err != nil {
			return nil, err
		}
		listed, listedFresh = true, fresh
		return all, nil
	}
	take := func(key string, inUse inUseFunc) (bool, error) {
		if held[key] {
			return true, nil
		}
		ok, err := s.c.claim(ctx, key, a.owner, inUse)
		if ok {
			a.claimed = append(a.claimed, key)
			held[key] = true
		}
		return ok, err
	}
	if err := s.clusterIP(svc, old, list, take); err != nil {
		return nil, err
	}
	if err := s.nodePorts(svc, old, list, take); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, k := range keys(svc) {
		want[k] = true
	}
	for _, k := range keys(old) {
		if !want[k] {
			a.drop = append(a.drop, k)
		}
	}
	s.setView(a.owner, svc)
	return a, nil
}

type takeFunc func(key string, inUse inUseFunc) (bool, error)

func (s *Services) clusterIP(svc, old *manifests.Service, list func(fresh bool) ([]*manifests.Service, error), take takeFunc) error {
	sp := &svc.Spec
	if sp.Type == manifests.ServiceTypeExternalName {
		if sp.ClusterIP != "" && sp.ClusterIP != manifests.ClusterIPNone {
			return manifests.FieldErrors{{Path: "spec.clusterIP", Reason: fmt.Sprintf("Invalid value: %q: may not be set for an ExternalName service", sp.ClusterIP)}}
		}
		return nil
	}
	if sp.ClusterIP == "" && old != nil && old.Spec.ClusterIP != "" && old.Spec.Type != manifests.ServiceTypeExternalName {
		sp.ClusterIP = old.Spec.ClusterIP
	}
	defer func() {
		if sp.ClusterIP != "" {
			sp.ClusterIPs = []string{sp.ClusterIP}
		}
	}()
	if sp.ClusterIP == manifests.ClusterIPNone {
		return nil
	}
	inUse := func(ip string) inUseFunc {
		return func(ctx context.Context, holder string) (bool, error) {
			h, err := s.holder(ctx, holder)
			return h != nil && h.Spec.ClusterIP == ip, err
		}
	}
	if sp.ClusterIP != "" {
		ip, err := netip.ParseAddr(sp.ClusterIP)
		if err != nil || !s.usable(ip) {
			return manifests.FieldErrors{{Path: "spec.clusterIP", Reason: fmt.Sprintf("Invalid value: %q: provided IP is not in the valid range. The range of valid IPs is %s", sp.ClusterIP, s.cidr)}}
		}
		svcs, err := list(true)
		if err != nil {
			return err
		}
		ok := true
		for _, o := range svcs {
			ok = ok && o.Spec.ClusterIP != sp.ClusterIP
		}
		if ok {
			if ok, err = take(messaging.ClusterIPClaimKey(sp.ClusterIP), inUse(sp.ClusterIP)); err != nil {
				return err
			}
		}
		if !ok {
			return manifests.FieldErrors{{Path: "spec.clusterIP", Reason: fmt.Sprintf("Invalid value: %q: provided IP is already allocated", sp.ClusterIP)}}
		}
		return nil
	}
	svcs, err := list(false)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, o := range svcs {
		used[o.Spec.ClusterIP] = true
	}
	for ip := s.cidr.Addr().Next(); s.usable(ip); ip = ip.Next() {
		text := ip.String()
		if used[text] {
			continue
		}
		ok, err := take(messaging.ClusterIPClaimKey(text), inUse(text))
		if err != nil {
			return err
		}
		if ok {
			sp.ClusterIP = text
			return nil
		}
	}
	return client.Errorf(client.CodeUnavailable, "spec.clusterIP: no free IP left in %s", s.cidr)
}

// usable reports whether ip is a host address of the CIDR (not the
// network or broadcast address).
func (s *Services) usable(ip netip.Addr) bool {
	return usableIn(s.cidr, ip)
}

func usableIn(p netip.Prefix, ip netip.Addr) bool {
	if !ip.Is4() || !p.Contains(ip) || ip == p.Addr() {
		return false
	}
	b := ip.As4()
	host := 32 - p.Bits()
	mask := uint32(1)<<host - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return v&mask != mask
}

// holder returns the service a claim value names, or nil if it is gone.
func (s *Services) holder(ctx context.Context, holder string) (*manifests.Service, error) {
	var ns, name string
	for i := range len(holder) {
		if holder[i] == '/' {
			ns, name = holder[:i], holder[i+1:]
			break
		}
	}
	if name == "" {
		return nil, nil
	}
	obj, err := s.st.Get(ctx, "services", ns, name)
	if client.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get service %s: %w", holder, err)
	}
	svc, _ := obj.(*manifests.Service)
	return svc, nil
}

func (s *Services) nodePorts(svc, old *manifests.Service, list func(fresh bool) ([]*manifests.Service, error), take takeFunc) error {
	sp := &svc.Spec
	if sp.Type != manifests.ServiceTypeNodePort {
		return nil
	}
	if old != nil && old.Spec.Type == manifests.ServiceTypeNodePort {
		for i := range sp.Ports {
			if sp.Ports[i].NodePort == 0 {
				sp.Ports[i].NodePort = previousNodePort(sp.Ports[i], old.Spec.Ports)
			}
		}
	}
	inUse := func(port int32) inUseFunc {
		return func(ctx context.Context, holder string) (bool, error) {
			h, err := s.holder(ctx, holder)
			if h == nil || err != nil {
				return false, err
			}
			for _, p := range h.Spec.Ports {
				if p.NodePort == port {
					return true, nil
				}
			}
			return false, nil
		}
	}
	mine := map[int32]bool{}
	for i, p := range sp.Ports {
		if p.NodePort == 0 {
			continue
		}
		if mine[p.NodePort] {
			continue // TCP and UDP on one port
		}
		svcs, err := list(true)
		if err != nil {
			return err
		}
		ok := !usesNodePort(svcs, p.NodePort)
		if ok {
			if ok, err = take(messaging.NodePortClaimKey(p.NodePort), inUse(p.NodePort)); err != nil {
				return err
			}
		}
		if !ok {
			return manifests.FieldErrors{{Path: fmt.Sprintf("spec.ports[%d].nodePort", i), Reason: fmt.Sprintf("Invalid value: %d: provided port is already allocated", p.NodePort)}}
		}
		mine[p.NodePort] = true
	}
	for i := range sp.Ports {
		if sp.Ports[i].NodePort != 0 {
			continue
		}
		svcs, err := list(false)
		if err != nil {
			return err
		}
		used := map[int32]bool{}
		for _, o := range svcs {
			for _, p := range o.Spec.Ports {
				used[p.NodePort] = true
			}
		}
		found := false
		for port := int32(manifests.MinNodePort); port <= manifests.MaxNodePort && !found; port++ {
			if used[port] || mine[port] {
				continue
			}
			ok, err := take(messaging.NodePortClaimKey(port), inUse(port))
			if err != nil {
				return err
			}
			if ok {
				sp.Ports[i].NodePort, mine[port], found = port, true, true
			}
		}
		if !found {
			return client.Errorf(client.CodeUnavailable, "spec.ports[%d].nodePort: no free node port left", i)
		}
	}
	return nil
}

// previousNodePort returns the node port old gave the same port (by name
// and protocol, else by port number and protocol), or 0.
func previousNodePort(p manifests.ServicePort, old []manifests.ServicePort) int32 {
	for _, o := range old {
		if o.Name == p.Name && o.Protocol == p.Protocol && (p.Name != "" || o.Port == p.Port) {
			return o.NodePort
		}
	}
	for _, o := range old {
		if o.Port == p.Port && o.Protocol == p.Protocol {
			return o.NodePort
		}
	}
	return 0
}

// Release releases the claims of a deleted service.
func (s *Services) Release(ctx context.Context, svc *manifests.Service) error {
	s.setView(owner(svc), nil)
	for _, k := range keys(svc) {
		if err := s.c.release(ctx, k, owner(svc)); err != nil {
			return err
		}
	}
	return nil
}

func usesNodePort(svcs []*manifests.Service, port int32) bool {
	for _, o := range svcs {
		for _, p := range o.Spec.Ports {
			if p.NodePort == port {
				return true
			}
		}
	}
	return false
}
