// Package proxy is the agent's userspace Service proxy: a TCP listener or
// UDP socket per Service port on the ClusterIP (added as a /32 to a dummy
// link so traffic to it is delivered locally) and, for NodePort Services, on
// the node address at the nodePort. Connections go round robin to the ready
// endpoints; an endpoint that cannot be dialed is skipped.
package proxy

import (
	"net"
	"strconv"
	"strings"
)

// Service types.
const (
	TypeClusterIP = "ClusterIP"
	TypeNodePort  = "NodePort"
)

// Snapshot is the set of Services and Endpoints the proxy serves.
type Snapshot struct {
	Services  []Service
	Endpoints []Endpoints
}

// Service is the part of a Service the proxy uses.
type Service struct {
	Namespace, Name string
	Type            string
	// ClusterIP is empty or "None" for headless services (no listener).
	ClusterIP string
	Ports     []ServicePort
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string
	Protocol string // TCP (default) or UDP
	Port     int
	NodePort int
}

// Endpoints are the addresses behind the Service of the same name.
type Endpoints struct {
	Namespace, Name string
	Subsets         []Subset
}

// Subset is a group of addresses sharing the same ports.
type Subset struct {
	Addresses         []string // ready IPs
	NotReadyAddresses []string
	Ports             []EndpointPort
}

// EndpointPort is a port of a subset, named like the service port.
type EndpointPort struct {
	Name     string
	Protocol string
	Port     int
}

func protocol(p string) string {
	if p == "" {
		return "TCP"
	}
	return strings.ToUpper(p)
}

// Headless reports whether s has no cluster IP.
func (s *Service) Headless() bool { return s.ClusterIP == "" || s.ClusterIP == "None" }

// Backends returns the ready "ip:port" addresses of service port sp.
func (e *Endpoints) Backends(sp ServicePort) []string {
	if e == nil {
		return nil
	}
	var out []string
	for _, ss := range e.Subsets {
		for _, p := range ss.Ports {
			if p.Name != sp.Name || protocol(p.Protocol) != protocol(sp.Protocol) {
				continue
			}
			for _, ip := range ss.Addresses {
				out = append(out, net.JoinHostPort(ip, strconv.Itoa(p.Port)))
			}
		}
	}
	return out
}

// Lookup returns the endpoints of namespace/name, or nil.
func (s *Snapshot) Lookup(namespace, name string) *Endpoints {
	for i := range s.Endpoints {
		if s.Endpoints[i].Namespace == namespace && s.Endpoints[i].Name == name {
			return &s.Endpoints[i]
		}
	}
	return nil
}
