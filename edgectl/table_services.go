package edgectl

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// serviceHeaders are the columns of services, as kubectl prints them.
func serviceHeaders(wide bool) []string {
	h := []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}
	if wide {
		h = append(h, "SELECTOR")
	}
	return h
}

func serviceRow(s *manifests.Service, name, created string, wide bool) []string {
	clusterIP, external := orNone(s.Spec.ClusterIP), "<none>"
	if s.Spec.Type == manifests.ServiceTypeExternalName {
		external = orNone(s.Spec.ExternalName)
	}
	row := []string{name, s.Spec.Type, clusterIP, external, servicePorts(s.Spec.Ports), created}
	if wide {
		row = append(row, labelsColumn(s.Spec.Selector))
	}
	return row
}

// servicePorts is "80/TCP,53:30053/UDP" (port:nodePort/protocol).
func servicePorts(ports []manifests.ServicePort) string {
	if len(ports) == 0 {
		return "<none>"
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		if p.NodePort != 0 {
			parts[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
		} else {
			parts[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		}
	}
	return strings.Join(parts, ",")
}

// maxEndpointsShown is how many endpoints kubectl lists before "+ N more...".
const maxEndpointsShown = 3

// endpointsColumn lists the ready ip:port pairs of e.
func endpointsColumn(e *manifests.Endpoints) string {
	var all []string
	for _, s := range e.Subsets {
		for _, a := range s.Addresses {
			if len(s.Ports) == 0 {
				all = append(all, a.IP)
				continue
			}
			for _, p := range s.Ports {
				all = append(all, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	switch {
	case len(all) == 0:
		return "<none>"
	case len(all) > maxEndpointsShown:
		return strings.Join(all[:maxEndpointsShown], ",") + fmt.Sprintf(" + %d more...", len(all)-maxEndpointsShown)
	}
	return strings.Join(all, ",")
}
