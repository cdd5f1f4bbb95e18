// Package ingress is the agent's Ingress proxy: an HTTP (and HTTPS)
// reverse proxy on a node port that routes requests by host and path, as
// the networking.k8s.io/v1 Ingresses of the cluster say, to the ready
// endpoints of their Services. The route table is built from the API
// objects by Build and swapped as a whole by Server.Update, so a reload
// never drops the requests of other hosts.
package ingress

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/edgeorch/edgeorch/manifests"
)

// Backend is a Service port of a route and its ready endpoints.
type Backend struct {
	// Service is "namespace/name:port", for messages and logs.
	Service string
	// Addrs are the ready endpoints, "ip:port".
	Addrs []string
	// Reason says why Addrs is empty (no such Service, port, or no ready
	// endpoint).
	Reason string
	next   atomic.Uint64
}

// Pick returns the endpoints in the order to try them: round robin
// start, then the following ones. Empty when there is none.
func (b *Backend) Pick() []string {
	n := uint64(len(b.Addrs))
	if n == 0 {
		return nil
	}
	start := (b.next.Add(1) - 1) % n
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, b.Addrs[(start+i)%n])
	}
	return out
}

// route is one path of a rule.
type route struct {
	path    string // as written (Exact), or without its trailing "/" (Prefix; "" for "/")
	exact   bool
	backend *Backend
}

// matches reports whether the request path p matches r: Exact is equality;
// Prefix matches whole path elements ("/foo" matches "/foo", "/foo/" and
// "/foo/bar", not "/foobar").
func (r *route) matches(p string) bool {
	if r.exact {
		return p == r.path
	}
	if r.path == "" {
		return true
	}
	return p == r.path || strings.HasPrefix(p, r.path+"/")
}

// hostRoutes are the paths of every rule for one host, best first:
// longest path first, Exact before Prefix at equal length.
type hostRoutes struct {
	routes []route
}

func (h *hostRoutes) add(r route) {
	for _, o := range h.routes {
		if o.path == r.path && o.exact == r.exact {
			return // the older Ingress keeps the path
		}
	}
	h.routes = append(h.routes, r)
}

func (h *hostRoutes) sort() {
	slices.SortStableFunc(h.routes, func(a, b route) int {
		if c := cmp.Compare(len(b.path), len(a.path)); c != 0 {
			return c
		}
		switch {
		case a.exact && !b.exact:
			return -1
		case b.exact && !a.exact:
			return 1
		}
		return 0
	})
}

func (h *hostRoutes) match(p string) *Backend {
	if h == nil {
		return nil
	}
	for i := range h.routes {
		if h.routes[i].matches(p) {
			return h.routes[i].backend
		}
	}
	return nil
}

// certEntry is the certificate of one tls entry and the hosts it is for.
type certEntry struct {
	hosts []string // lower case; "*.example.com" wildcards; empty: any host
	cert  *tls.Certificate
}

// Table is the routing state of the proxy, read-only once built.
type Table struct {
	exact     map[string]*hostRoutes // by host
	wildcards map[string]*hostRoutes // by "*.suffix"
	anyHost   *hostRoutes            // rules without host
	def       *Backend               // first spec.defaultBackend
	certs     []certEntry            // in Ingress order; the first is the default
}

// Match returns the backend of the request for host (no port) and path:
// the rules of the most specific host (exact, then wildcard, then rules
// without host) and there the longest matching path, Exact before Prefix;
// else the default backend. nil when nothing matches (404).
func (t *Table) Match(host, path string) *Backend {
	if t == nil {
		return nil
	}
	host = normalizeHost(host)
	if path == "" {
		path = "/"
	}
	var h *hostRoutes
	if r, ok := t.exact[host]; ok {
		h = r
	} else if _, rest, ok := strings.Cut(host, "."); ok && rest != "" {
		if r, ok := t.wildcards["*."+rest]; ok {
			h = r
		}
	}
	if h == nil {
		h = t.anyHost
	}
	if b := h.match(path); b != nil {
		return b
	}
	return t.def
}

// Certificate returns the certificate for the SNI name: the first tls
// entry listing the name, else one listing a matching wildcard, else one
// without hosts, else the first certificate. nil when there is none.
func (t *Table) Certificate(serverName string) *tls.Certificate {
	if t == nil || len(t.certs) == 0 {
		return nil
	}
	name := normalizeHost(serverName)
	var wild, anyHost *tls.Certificate
	for _, c := range t.certs {
		if len(c.hosts) == 0 && anyHost == nil {
			anyHost = c.cert
		}
		for _, h := range c.hosts {
			if h == name {
				return c.cert
			}
			if wild == nil && strings.HasPrefix(h, "*.") && manifests.IngressHostMatches(h, name) {
				wild = c.cert
			}
		}
	}
	switch {
	case wild != nil:
		return wild
	case anyHost != nil:
		return anyHost
	}
	return t.certs[0].cert
}

// HasCertificates reports whether the table holds any certificate.
func (t *Table) HasCertificates() bool { return t != nil && len(t.certs) > 0 }

func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// Objects are what Build needs, keyed by "namespace/name".
type Objects struct {
	Ingresses []*manifests.Ingress
	Services  map[string]*manifests.Service
	Endpoints map[string]*manifests.Endpoints
	Secrets   map[string]*manifests.Secret
}

// Build makes the route table of objs. Ingresses are taken oldest first
// (then by namespace/name): when two define the same host and path, or
// both a default backend, the older wins. Problems that leave a part out
// (a TLS Secret missing or unusable) are returned joined; the rest of the
// table is still built.
func Build(objs Objects) (*Table, error) {
	ings := slices.Clone(objs.Ingresses)
	slices.SortStableFunc(ings, func(a, b *manifests.Ingress) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp); c != 0 {
			return c
		}
		return cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	t := &Table{exact: map[string]*hostRoutes{}, wildcards: map[string]*hostRoutes{}}
	var errs []error
	for _, ing := range ings {
		ns := ing.Namespace
		if ing.Spec.DefaultBackend != nil && t.def == nil {
			t.def = backendOf(objs, ns, ing.Spec.DefaultBackend)
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			host := normalizeHost(rule.Host)
			var h *hostRoutes
			switch {
			case host == "":
				if t.anyHost == nil {
					t.anyHost = &hostRoutes{}
				}
				h = t.anyHost
			case strings.HasPrefix(host, "*."):
				if h = t.wildcards[host]; h == nil {
					h = &hostRoutes{}
					t.wildcards[host] = h
				}
			default:
				if h = t.exact[host]; h == nil {
					h = &hostRoutes{}
					t.exact[host] = h
				}
			}
			for _, p := range rule.HTTP.Paths {
				r := route{backend: backendOf(objs, ns, &p.Backend)}
				if p.PathType == manifests.PathTypeExact {
					r.exact, r.path = true, p.Path
				} else { // Prefix, ImplementationSpecific
					r.path = strings.TrimRight(p.Path, "/")
				}
				h.add(r)
			}
		}
		for i, tl := range ing.Spec.TLS {
			cert, err := certificate(objs, ns, tl.SecretName)
			if err != nil {
				errs = append(errs, fmt.Errorf("ingress %s/%s: spec.tls[%d]: %w", ns, ing.Name, i, err))
				continue
			}
			e := certEntry{cert: cert}
			for _, h := range tl.Hosts {
				e.hosts = append(e.hosts, normalizeHost(h))
			}
			t.certs = append(t.certs, e)
		}
	}
	for _, h := range t.exact {
		h.sort()
	}
	for _, h := range t.wildcards {
		h.sort()
	}
	if t.anyHost != nil {
		t.anyHost.sort()
	}
	return t, errors.Join(errs...)
}

// backendOf resolves an Ingress backend to the ready endpoints of the
// Service port it names (by number or name).
func backendOf(objs Objects, ns string, ib *manifests.IngressBackend) *Backend {
	if ib.Service == nil {
		return &Backend{Service: ns + "/?", Reason: "not a service backend"}
	}
	sb := ib.Service
	port := sb.Port.Name
	if port == "" {
		port = strconv.Itoa(int(sb.Port.Number))
	}
	b := &Backend{Service: ns + "/" + sb.Name + ":" + port}
	svc := objs.Services[ns+"/"+sb.Name]
	if svc == nil {
		b.Reason = fmt.Sprintf("service %s/%s not found", ns, sb.Name)
		return b
	}
	if svc.Spec.Type == manifests.ServiceTypeExternalName {
		b.Reason = fmt.Sprintf("service %s/%s is of type ExternalName, which ingress backends do not support", ns, sb.Name)
		return b
	}
	var sp *manifests.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if (sb.Port.Name != "" && p.Name == sb.Port.Name) || (sb.Port.Name == "" && p.Port == sb.Port.Number) {
			sp = p
			break
		}
	}
	if sp == nil {
		b.Reason = fmt.Sprintf("service %s/%s has no port %s", ns, sb.Name, port)
		return b
	}
	if p := sp.Protocol; p != "" && !strings.EqualFold(p, "TCP") {
		b.Reason = fmt.Sprintf("service %s/%s port %s is %s, not TCP", ns, sb.Name, port, p)
		return b
	}
	if ep := objs.Endpoints[ns+"/"+sb.Name]; ep != nil {
		for _, ss := range ep.Subsets {
			for _, p := range ss.Ports {
				if p.Name != sp.Name || (p.Protocol != "" && !strings.EqualFold(p.Protocol, "TCP")) {
					continue
				}
				for _, a := range ss.Addresses {
					b.Addrs = append(b.Addrs, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
				}
			}
		}
	}
	if len(b.Addrs) == 0 {
		b.Reason = fmt.Sprintf("service %s/%s has no ready endpoint", ns, sb.Name)
	}
	return b
}

// certificate loads the kubernetes.io/tls Secret ns/name.
func certificate(objs Objects, ns, name string) (*tls.Certificate, error) {
	s := objs.Secrets[ns+"/"+name]
	if s == nil {
		return nil, fmt.Errorf("secret %s/%s not found", ns, name)
	}
	crt, key := secretValue(s, "tls.crt"), secretValue(s, "tls.key")
	if crt == nil || key == nil {
		return nil, fmt.Errorf("secret %s/%s: needs tls.crt and tls.key (type kubernetes.io/tls)", ns, name)
	}
	c, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return &c, nil
}

func secretValue(s *manifests.Secret, key string) []byte {
	if v, ok := s.Data[key]; ok {
		return v
	}
	if v, ok := s.StringData[key]; ok {
		return []byte(v)
	}
	return nil
}

// SecretNames returns the "namespace/name" of the TLS Secrets ings use.
func SecretNames(ings []*manifests.Ingress) []string {
	var out []string
	for _, ing := range ings {
		for _, t := range ing.Spec.TLS {
			if t.SecretName != "" {
				k := ing.Namespace + "/" + t.SecretName
				if !slices.Contains(out, k) {
					out = append(out, k)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
