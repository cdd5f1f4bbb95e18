package edgeagent

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/dns"
	"github.com/edgeorch/edgeorch/edgeagent/proxy"
	"github.com/edgeorch/edgeorch/manifests"
)

// DNSAddrGateway as Config.DNSAddr serves DNS on port 53 of the pod bridge
// gateway once the pod network is up.
const DNSAddrGateway = "gateway"

// services keeps the last Services and Endpoints seen through the API and
// feeds the proxy, the DNS server and the service link variables. Offline
// the last snapshot stays in force.
type services struct {
	a     *Agent
	proxy *proxy.Proxy // nil unless Config.ServiceProxy
	dns   *dns.Server  // nil unless Config.DNSAddr

	mu   sync.Mutex
	svcs map[string]*manifests.Service   // by namespace/name
	eps  map[string]*manifests.Endpoints // by namespace/name
}

func newServices(a *Agent) *services {
	s := &services{a: a, svcs: map[string]*manifests.Service{}, eps: map[string]*manifests.Endpoints{}}
	if a.cfg.ServiceProxy {
		s.proxy = proxy.New(proxy.Config{
			Addresses: proxy.NewDummyLink(a.cfg.ServiceLink, nil),
			Logger:    a.log,
		})
	}
	if a.cfg.DNSAddr != "" {
		s.dns = dns.New(dns.Config{NamespaceOf: a.namespaceOf, Logger: a.log})
	}
	return s
}

// namespaceOf returns the namespace of the local pod with pod network
// address ip ("" if none).
func (a *Agent) namespaceOf(ip netip.Addr) string {
	if a.pnet == nil {
		return ""
	}
	n := a.pnet.Network()
	if n == nil {
		return ""
	}
	a.mu.Lock()
	ws := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		ws = append(ws, w)
	}
	a.mu.Unlock()
	for _, w := range ws {
		w.mu.Lock()
		sandbox, ns := "", ""
		if w.rec != nil && w.rec.Pod != nil {
			sandbox, ns = w.rec.SandboxID, w.rec.Pod.Namespace
		}
		w.mu.Unlock()
		if sandbox == "" {
			continue
		}
		if pip, ok := netip.AddrFromSlice(n.PodIP(sandbox)); ok && pip.Unmap() == ip {
			return ns
		}
	}
	return ""
}

// forNamespace returns the services of ns, for service link variables.
func (s *services) forNamespace(ns string) []manifests.Service {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []manifests.Service
	for _, sv := range s.svcs {
		if sv.Namespace == ns {
			out = append(out, *sv)
		}
	}
	return out
}

// run watches services and endpoints until ctx is done, watching again
// (a full list) after every reconnect, and serves DNS.
func (s *services) run(ctx context.Context) {
	if s.dns != nil {
		s.a.goRun(func() { s.serveDNS(ctx) })
	}
	defer func() {
		if s.proxy != nil {
			if err := s.proxy.Close(); err != nil {
				s.a.log.Warn("service proxy close", "err", err)
			}
		}
	}()
	api := client.New(s.a.nc)
	for ctx.Err() == nil {
		reconnected := s.a.conn.connected()
		wctx, cancel := context.WithCancel(ctx)
		if err := s.watch(wctx, api, reconnected); err != nil {
			s.a.log.Debug("watch services", "err", err)
			select {
			case <-ctx.Done():
			case <-reconnected:
			case <-time.After(2 * time.Second):
			}
		}
		cancel()
	}
}

func (s *services) watch(ctx context.Context, api *client.Client, reconnected <-chan struct{}) error {
	// A full list first replaces the snapshot (what was deleted while
	// offline goes); the watches then list again (harmless upserts) and
	// stream the changes.
	svcs := map[string]*manifests.Service{}
	eps := map[string]*manifests.Endpoints{}
	handle := func(typ string, obj manifests.Object) {
		key := obj.GetObjectMeta().Namespace + "/" + obj.GetObjectMeta().Name
		switch o := obj.(type) {
		case *manifests.Service:
			if typ == client.Deleted {
				delete(svcs, key)
			} else {
				svcs[key] = o
			}
		case *manifests.Endpoints:
			if typ == client.Deleted {
				delete(eps, key)
			} else {
				eps[key] = o
			}
		}
	}
	for _, res := range []string{"services", "endpoints"} {
		items, _, err := api.List(ctx, res, "", "")
		if err != nil {
			return err
		}
		for _, o := range items {
			handle(client.Added, o)
		}
	}
	svcEv, err := api.Watch(ctx, "services", "", "")
	if err != nil {
		return err
	}
	epEv, err := api.Watch(ctx, "endpoints", "", "")
	if err != nil {
		return err
	}
	for {
		s.mu.Lock()
		s.svcs, s.eps = maps.Clone(svcs), maps.Clone(eps)
		s.mu.Unlock()
		s.apply()
		// Wait for events; apply once a burst is over.
		for first := true; first || len(svcEv) > 0 || len(epEv) > 0; first = false {
			select {
			case <-ctx.Done():
				return nil
			case <-reconnected:
				return nil // events may have been lost: list again
			case ev, ok := <-svcEv:
				if !ok {
					return nil
				}
				handle(ev.Type, ev.Object)
			case ev, ok := <-epEv:
				if !ok {
					return nil
				}
				handle(ev.Type, ev.Object)
			}
		}
	}
}

// apply feeds the current snapshot to the proxy and the DNS server.
func (s *services) apply() {
	s.mu.Lock()
	snap, names := toSnapshot(s.svcs, s.eps)
	s.mu.Unlock()
	if s.proxy != nil {
		if err := s.proxy.Update(snap); err != nil {
			s.a.log.Warn("service proxy", "err", err)
		}
	}
	if s.dns != nil {
		s.dns.Update(names)
	}
	s.a.ing.changed() // the Ingress routes follow Services and Endpoints
}

// toSnapshot converts the API objects for the proxy and the DNS server.
func toSnapshot(svcs map[string]*manifests.Service, eps map[string]*manifests.Endpoints) (proxy.Snapshot, []dns.Service) {
	var snap proxy.Snapshot
	var names []dns.Service
	for _, sv := range svcs {
		if sv.Spec.Type == manifests.ServiceTypeExternalName {
			// No proxying: the DNS server answers the name with a CNAME.
			names = append(names, dns.Service{Namespace: sv.Namespace, Name: sv.Name, ExternalName: sv.Spec.ExternalName})
			continue
		}
		ps := proxy.Service{Namespace: sv.Namespace, Name: sv.Name, Type: proxy.TypeClusterIP, ClusterIP: sv.Spec.ClusterIP}
		if sv.Spec.Type == manifests.ServiceTypeNodePort || sv.Spec.Type == manifests.ServiceTypeLoadBalancer {
			ps.Type = proxy.TypeNodePort
		}
		for _, p := range sv.Spec.Ports {
			ps.Ports = append(ps.Ports, proxy.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: int(p.Port), NodePort: int(p.NodePort)})
		}
		snap.Services = append(snap.Services, ps)
		d := dns.Service{Namespace: sv.Namespace, Name: sv.Name}
		if sv.IsHeadless() {
			if ep := eps[sv.Namespace+"/"+sv.Name]; ep != nil {
				for _, ss := range ep.Subsets {
					for _, a := range ss.Addresses {
						if ip, err := netip.ParseAddr(a.IP); err == nil && !slices.Contains(d.IPs, ip) {
							d.IPs = append(d.IPs, ip)
						}
						if ip, err := netip.ParseAddr(a.IP); err == nil && a.Hostname != "" { // dns/hosts.go
							if d.Hosts == nil {
								d.Hosts = map[string][]netip.Addr{}
							}
							d.Hosts[a.Hostname] = append(d.Hosts[a.Hostname], ip)
						}
					}
				}
			}
		} else if ip, err := netip.ParseAddr(sv.Spec.ClusterIP); err == nil {
			d.IPs = []netip.Addr{ip}
		}
		names = append(names, d)
	}
	for _, ep := range eps {
		pe := proxy.Endpoints{Namespace: ep.Namespace, Name: ep.Name}
		for _, ss := range ep.Subsets {
			var sub proxy.Subset
			for _, a := range ss.Addresses {
				sub.Addresses = append(sub.Addresses, a.IP)
			}
			for _, a := range ss.NotReadyAddresses {
				sub.NotReadyAddresses = append(sub.NotReadyAddresses, a.IP)
			}
			for _, p := range ss.Ports {
				sub.Ports = append(sub.Ports, proxy.EndpointPort{Name: p.Name, Protocol: p.Protocol, Port: int(p.Port)})
			}
			pe.Subsets = append(pe.Subsets, sub)
		}
		snap.Endpoints = append(snap.Endpoints, pe)
	}
	return snap, names
}

// serveDNS serves DNS on Config.DNSAddr (or the pod gateway) until ctx is
// done; a failure to listen is logged and retried.
func (s *services) serveDNS(ctx context.Context) {
	for ctx.Err() == nil {
		addr := s.a.cfg.DNSAddr
		if addr == DNSAddrGateway {
			addr = ""
			if s.a.pnet != nil {
				if n := s.a.pnet.Network(); n != nil {
					addr = net.JoinHostPort(n.Gateway().String(), "53")
				}
			}
		}
		if addr != "" {
			err := s.dns.ListenAndServe(ctx, addr, func(a net.Addr) { s.a.log.Info("dns listening", "addr", a.String()) })
			if err != nil {
				s.a.log.Warn("dns server", "addr", addr, "err", err)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}
