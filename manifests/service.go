package manifests

import (
	"fmt"
	"net/netip"
	"strings"
)

// Service types.
const (
	ServiceTypeClusterIP    = "ClusterIP"
	ServiceTypeNodePort     = "NodePort"
	ServiceTypeExternalName = "ExternalName"
	ServiceTypeLoadBalancer = "LoadBalancer"
	// ClusterIPNone marks a headless service.
	ClusterIPNone = "None"
)

// NodePort range (Kubernetes default).
const (
	MinNodePort = 30000
	MaxNodePort = 32767
)

// ---- Service ----

// Service exposes a set of pods (selected by labels) under one virtual IP
// and port, or, headless, by their own IPs.
type Service struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ServiceSpec   `json:"spec"`
	Status     ServiceStatus `json:"status,omitzero"`
}

// ServiceSpec is the desired state of a service.
type ServiceSpec struct {
	Type                     string            `json:"type,omitempty"`
	Selector                 map[string]string `json:"selector,omitempty"`
	Ports                    []ServicePort     `json:"ports,omitempty"`
	ClusterIP                string            `json:"clusterIP,omitempty"`
	ClusterIPs               []string          `json:"clusterIPs,omitempty"`
	SessionAffinity          string            `json:"sessionAffinity,omitempty"`
	ExternalName             string            `json:"externalName,omitempty"`
	PublishNotReadyAddresses bool              `json:"publishNotReadyAddresses,omitempty"`
}

// ServicePort is one port a service exposes.
type ServicePort struct {
	Name       string      `json:"name,omitempty"`
	Protocol   string      `json:"protocol,omitempty"`
	Port       int32       `json:"port"`
	TargetPort IntOrString `json:"targetPort,omitzero"`
	NodePort   int32       `json:"nodePort,omitempty"`
}

// ServiceStatus is the observed state of a service (load balancers are
// not supported, so it stays empty).
type ServiceStatus struct {
	LoadBalancer LoadBalancerStatus `json:"loadBalancer,omitzero"`
}

// LoadBalancerStatus lists the ingress points of a load balancer.
type LoadBalancerStatus struct {
	Ingress []LoadBalancerIngress `json:"ingress,omitempty"`
}

// LoadBalancerIngress is one ingress point of a load balancer.
type LoadBalancerIngress struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
}

// IsHeadless reports whether the service has no cluster IP.
func (s *Service) IsHeadless() bool { return s.Spec.ClusterIP == ClusterIPNone }

// ---- Endpoints ----

// Endpoints lists the addresses behind a service (same name as the
// service).
type Endpoints struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Subsets    []EndpointSubset `json:"subsets,omitempty"`
}

// EndpointSubset is a set of addresses sharing a set of ports.
type EndpointSubset struct {
	Addresses         []EndpointAddress `json:"addresses,omitempty"`
	NotReadyAddresses []EndpointAddress `json:"notReadyAddresses,omitempty"`
	Ports             []EndpointPort    `json:"ports,omitempty"`
}

// EndpointAddress is one pod's address.
type EndpointAddress struct {
	IP        string           `json:"ip"`
	Hostname  string           `json:"hostname,omitempty"`
	NodeName  *string          `json:"nodeName,omitempty"`
	TargetRef *ObjectReference `json:"targetRef,omitempty"`
}

// EndpointPort is one port of the addresses of a subset.
type EndpointPort struct {
	Name     string `json:"name,omitempty"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

func defaultService(s *Service) {
	if s.Spec.Type == "" {
		s.Spec.Type = ServiceTypeClusterIP
	}
	if s.Spec.SessionAffinity == "" && s.Spec.Type != ServiceTypeExternalName {
		s.Spec.SessionAffinity = "None"
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		if p.TargetPort == (IntOrString{}) {
			p.TargetPort = FromInt(p.Port)
		}
	}
	if s.Spec.ClusterIP != "" && len(s.Spec.ClusterIPs) == 0 {
		s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
	}
}

func defaultEndpoints(e *Endpoints) {
	for i := range e.Subsets {
		for j := range e.Subsets[i].Ports {
			if e.Subsets[i].Ports[j].Protocol == "" {
				e.Subsets[i].Ports[j].Protocol = "TCP"
			}
		}
	}
}

func validateService(l *errList, s *Service) {
	sp := &s.Spec
	switch sp.Type {
	case ServiceTypeClusterIP, ServiceTypeNodePort, ServiceTypeExternalName:
	case ServiceTypeLoadBalancer:
		l.add("spec.type", "unsupported value %q: load balancers are not supported (use NodePort)", sp.Type)
	default:
		l.unsupported("spec.type", sp.Type, ServiceTypeClusterIP, ServiceTypeNodePort, ServiceTypeExternalName)
	}
	if sp.Type == ServiceTypeExternalName {
		if sp.ExternalName == "" {
			l.required("spec.externalName")
		} else if err := ValidateDNSSubdomain(strings.TrimSuffix(sp.ExternalName, ".")); err != nil {
			l.invalid("spec.externalName", sp.ExternalName, err.Error())
		}
	} else if len(sp.Ports) == 0 && sp.ClusterIP != ClusterIPNone {
		l.required("spec.ports")
	}
	if sp.ClusterIP != "" && sp.ClusterIP != ClusterIPNone {
		if a, err := netip.ParseAddr(sp.ClusterIP); err != nil || !a.Is4() {
			l.invalid("spec.clusterIP", sp.ClusterIP, "must be a valid IPv4 address, or \"None\"")
		}
	}
	if sp.ClusterIP == ClusterIPNone && sp.Type == ServiceTypeNodePort {
		l.invalid("spec.clusterIP", sp.ClusterIP, "may not be \"None\" for a NodePort service")
	}
	if len(sp.ClusterIPs) > 0 && sp.ClusterIPs[0] != sp.ClusterIP {
		l.invalid("spec.clusterIPs[0]", sp.ClusterIPs[0], "must match spec.clusterIP")
	}
	if len(sp.ClusterIPs) > 1 {
		l.add("spec.clusterIPs", "only one IP family (IPv4) is supported")
	}
	if !oneOf(sp.SessionAffinity, "", "None", "ClientIP") {
		l.unsupported("spec.sessionAffinity", sp.SessionAffinity, "None", "ClientIP")
	}
	validateLabels(l, sp.Selector, "spec.selector")
	names := map[string]bool{}
	nodePorts := map[string]bool{}
	for i, p := range sp.Ports {
		pp := fmt.Sprintf("spec.ports[%d]", i)
		if len(sp.Ports) > 1 && p.Name == "" {
			l.add(pp+".name", "required when a service has more than one port")
		}
		if p.Name != "" {
			validatePortName(l, pp+".name", p.Name)
			if names[p.Name] {
				l.add(pp+".name", "duplicate value %q", p.Name)
			}
			names[p.Name] = true
		}
		if !oneOf(p.Protocol, "TCP", "UDP") {
			l.unsupported(pp+".protocol", p.Protocol, "TCP", "UDP")
		}
		if p.Port < 1 || p.Port > 65535 {
			l.invalid(pp+".port", p.Port, "must be between 1 and 65535, inclusive")
		}
		if p.TargetPort.IsString {
			validatePortName(l, pp+".targetPort", p.TargetPort.StrVal)
		} else if p.TargetPort.IntVal < 1 || p.TargetPort.IntVal > 65535 {
			l.invalid(pp+".targetPort", p.TargetPort.IntVal, "must be between 1 and 65535, inclusive")
		}
		if p.NodePort != 0 {
			if sp.Type != ServiceTypeNodePort {
				l.add(pp+".nodePort", "forbidden: may not be used when type is %q", sp.Type)
			} else if p.NodePort < MinNodePort || p.NodePort > MaxNodePort {
				l.invalid(pp+".nodePort", p.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", MinNodePort, MaxNodePort))
			}
			key := fmt.Sprintf("%s/%d", p.Protocol, p.NodePort)
			if nodePorts[key] {
				l.add(pp+".nodePort", "duplicate value %d", p.NodePort)
			}
			nodePorts[key] = true
		}
	}
}

func validateServiceUpdate(l *errList, n, o *Service) {
	if o.Spec.ClusterIP != "" && n.Spec.ClusterIP != o.Spec.ClusterIP && n.Spec.Type != ServiceTypeExternalName && o.Spec.Type != ServiceTypeExternalName {
		l.invalid("spec.clusterIP", n.Spec.ClusterIP, "field is immutable")
	}
}

func validateEndpoints(l *errList, e *Endpoints) {
	for i, s := range e.Subsets {
		sp := fmt.Sprintf("subsets[%d]", i)
		check := func(field string, addrs []EndpointAddress) {
			for j, a := range addrs {
				if _, err := netip.ParseAddr(a.IP); err != nil {
					l.invalid(fmt.Sprintf("%s.%s[%d].ip", sp, field, j), a.IP, "must be a valid IP address")
				}
			}
		}
		check("addresses", s.Addresses)
		check("notReadyAddresses", s.NotReadyAddresses)
		for j, p := range s.Ports {
			pp := fmt.Sprintf("%s.ports[%d]", sp, j)
			if p.Port < 1 || p.Port > 65535 {
				l.invalid(pp+".port", p.Port, "must be between 1 and 65535, inclusive")
			}
			if !oneOf(p.Protocol, "TCP", "UDP") {
				l.unsupported(pp+".protocol", p.Protocol, "TCP", "UDP")
			}
			if p.Name != "" {
				validatePortName(l, pp+".name", p.Name)
			}
		}
	}
}
