package manifests

import (
	"fmt"
	"net/netip"
	"strings"
)

// networking.k8s.io/v1 Ingress: host and path rules that the agents' HTTP
// proxy (edgeagent/ingress) serves on a node port, forwarding to Services.
// See docs/ingress.md.

// Ingress path types.
const (
	PathTypeExact                  = "Exact"
	PathTypePrefix                 = "Prefix"
	PathTypeImplementationSpecific = "ImplementationSpecific" // served as Prefix
)

// Ingress routes HTTP(S) requests to Services by host and path.
type Ingress struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       IngressSpec   `json:"spec"`
	Status     IngressStatus `json:"status,omitzero"`
}

// IngressSpec is the desired state of an Ingress.
type IngressSpec struct {
	IngressClassName *string         `json:"ingressClassName,omitempty"`
	DefaultBackend   *IngressBackend `json:"defaultBackend,omitempty"`
	TLS              []IngressTLS    `json:"tls,omitempty"`
	Rules            []IngressRule   `json:"rules,omitempty"`
}

// IngressTLS names the certificate (a kubernetes.io/tls Secret in the
// Ingress's namespace) served for hosts.
type IngressTLS struct {
	Hosts      []string `json:"hosts,omitempty"`
	SecretName string   `json:"secretName,omitempty"`
}

// IngressRule routes the requests for one host (every host when empty).
type IngressRule struct {
	Host string                `json:"host,omitempty"`
	HTTP *HTTPIngressRuleValue `json:"http,omitempty"`
}

// HTTPIngressRuleValue lists the paths of a rule.
type HTTPIngressRuleValue struct {
	Paths []HTTPIngressPath `json:"paths"`
}

// HTTPIngressPath maps a path to a backend.
type HTTPIngressPath struct {
	Path     string         `json:"path,omitempty"`
	PathType string         `json:"pathType"`
	Backend  IngressBackend `json:"backend"`
}

// IngressBackend is where matching requests go: a Service port. Resource
// backends are decoded only to be refused by name.
type IngressBackend struct {
	Service  *IngressServiceBackend `json:"service,omitempty"`
	Resource *TypedLocalObjectRef   `json:"resource,omitempty"`
}

// TypedLocalObjectRef names an object of the same namespace (resource
// backends, which are not supported).
type TypedLocalObjectRef struct {
	APIGroup *string `json:"apiGroup,omitempty"`
	Kind     string  `json:"kind"`
	Name     string  `json:"name"`
}

// IngressServiceBackend is a Service and one of its ports.
type IngressServiceBackend struct {
	Name string             `json:"name"`
	Port ServiceBackendPort `json:"port"`
}

// ServiceBackendPort is a Service port by name or number (exactly one).
type ServiceBackendPort struct {
	Name   string `json:"name,omitempty"`
	Number int32  `json:"number,omitempty"`
}

// IngressStatus is the observed state of an Ingress.
type IngressStatus struct {
	LoadBalancer IngressLoadBalancerStatus `json:"loadBalancer,omitzero"`
}

// IngressLoadBalancerStatus lists the addresses serving the Ingress.
type IngressLoadBalancerStatus struct {
	Ingress []IngressLoadBalancerIngress `json:"ingress,omitempty"`
}

// IngressLoadBalancerIngress is one address serving the Ingress.
type IngressLoadBalancerIngress struct {
	IP       string              `json:"ip,omitempty"`
	Hostname string              `json:"hostname,omitempty"`
	Ports    []IngressPortStatus `json:"ports,omitempty"`
}

// IngressPortStatus is a port of an address serving the Ingress.
type IngressPortStatus struct {
	Port     int32   `json:"port"`
	Protocol string  `json:"protocol"`
	Error    *string `json:"error,omitempty"`
}

// IngressHostMatches reports whether the request host (no port, lower
// case) matches the rule host: equal, or for "*.example.com" exactly one
// label followed by ".example.com" (Kubernetes semantics). An empty rule
// host matches every host.
func IngressHostMatches(ruleHost, host string) bool {
	if ruleHost == "" {
		return true
	}
	ruleHost = strings.ToLower(ruleHost)
	if suffix, ok := strings.CutPrefix(ruleHost, "*"); ok {
		first, rest, found := strings.Cut(host, ".")
		return found && first != "" && "."+rest == suffix
	}
	return ruleHost == host
}

func validateIngressHost(l *errList, p, host string) {
	h := host
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		h = rest
	} else if strings.Contains(h, "*") {
		l.invalid(p, host, "a wildcard host must start with \"*.\" followed by a DNS name")
		return
	}
	if _, err := netip.ParseAddr(h); err == nil {
		l.invalid(p, host, "must be a DNS name, not an IP address")
		return
	}
	if err := ValidateDNSSubdomain(h); err != nil {
		l.invalid(p, host, err.Error())
		return
	}
	if strings.Count(h, ".") == 0 && strings.HasPrefix(host, "*.") {
		l.invalid(p, host, "a wildcard host needs at least two labels after \"*.\"")
	}
}

func validateIngressBackend(l *errList, p string, b *IngressBackend) {
	if b.Resource != nil {
		l.add(p+".resource", "not supported: only service backends are supported")
		return
	}
	if b.Service == nil {
		l.required(p + ".service")
		return
	}
	s := b.Service
	if s.Name == "" {
		l.required(p + ".service.name")
	} else if err := ValidateDNSLabel(s.Name); err != nil {
		l.invalid(p+".service.name", s.Name, err.Error())
	}
	pp := p + ".service.port"
	switch {
	case s.Port.Name != "" && s.Port.Number != 0:
		l.add(pp, "may not have both name and number")
	case s.Port.Name == "" && s.Port.Number == 0:
		l.add(pp, "required: a name or a number")
	case s.Port.Name != "":
		validatePortName(l, pp+".name", s.Port.Name)
	case s.Port.Number < 1 || s.Port.Number > 65535:
		l.invalid(pp+".number", s.Port.Number, "must be between 1 and 65535")
	}
}

func validateIngress(l *errList, ing *Ingress) {
	s := &ing.Spec
	if c := s.IngressClassName; c != nil {
		if err := ValidateDNSSubdomain(*c); err != nil {
			l.invalid("spec.ingressClassName", *c, err.Error())
		}
	}
	if s.DefaultBackend != nil {
		validateIngressBackend(l, "spec.defaultBackend", s.DefaultBackend)
	}
	if s.DefaultBackend == nil && len(s.Rules) == 0 {
		l.add("spec", "either defaultBackend or rules must be specified")
	}
	for i, r := range s.Rules {
		p := fmt.Sprintf("spec.rules[%d]", i)
		if r.Host != "" {
			validateIngressHost(l, p+".host", r.Host)
		}
		if r.HTTP == nil {
			continue
		}
		if len(r.HTTP.Paths) == 0 {
			l.required(p + ".http.paths")
		}
		for j, hp := range r.HTTP.Paths {
			pp := fmt.Sprintf("%s.http.paths[%d]", p, j)
			switch hp.PathType {
			case PathTypeExact, PathTypePrefix, PathTypeImplementationSpecific:
			case "":
				l.required(pp + ".pathType")
			default:
				l.unsupported(pp+".pathType", hp.PathType, PathTypeExact, PathTypePrefix, PathTypeImplementationSpecific)
			}
			switch {
			case hp.Path == "" && hp.PathType != PathTypeImplementationSpecific:
				l.add(pp+".path", "required for pathType %s", hp.PathType)
			case hp.Path != "" && !strings.HasPrefix(hp.Path, "/"):
				l.invalid(pp+".path", hp.Path, "must be an absolute path (start with \"/\")")
			case strings.ContainsAny(hp.Path, "?#"):
				l.invalid(pp+".path", hp.Path, "may not contain '?' or '#'")
			}
			validateIngressBackend(l, pp+".backend", &hp.Backend)
		}
	}
	for i, t := range s.TLS {
		p := fmt.Sprintf("spec.tls[%d]", i)
		for j, h := range t.Hosts {
			validateIngressHost(l, fmt.Sprintf("%s.hosts[%d]", p, j), h)
		}
		if t.SecretName == "" {
			l.add(p+".secretName", "required: the agent has no default certificate")
		} else if err := ValidateDNSSubdomain(t.SecretName); err != nil {
			l.invalid(p+".secretName", t.SecretName, err.Error())
		}
	}
}
