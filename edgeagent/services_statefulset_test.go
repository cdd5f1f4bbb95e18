package edgeagent

import (
	"net/netip"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

// A headless Service's ready endpoints with a hostname (StatefulSet pods)
// become pod host names for the DNS server; not-ready ones do not.
func TestToSnapshotPodHostNames(t *testing.T) {
	svc := &manifests.Service{Spec: manifests.ServiceSpec{ClusterIP: "None"}}
	svc.Namespace, svc.Name = "prod", "nginx"
	ep := &manifests.Endpoints{Subsets: []manifests.EndpointSubset{{
		Addresses:         []manifests.EndpointAddress{{IP: "10.244.1.5", Hostname: "web-0"}, {IP: "10.244.2.7", Hostname: "web-1"}, {IP: "10.244.3.9"}},
		NotReadyAddresses: []manifests.EndpointAddress{{IP: "10.244.4.2", Hostname: "web-2"}},
	}}}
	ep.Namespace, ep.Name = "prod", "nginx"
	_, names := toSnapshot(map[string]*manifests.Service{"prod/nginx": svc}, map[string]*manifests.Endpoints{"prod/nginx": ep})
	if len(names) != 1 {
		t.Fatalf("dns names = %+v", names)
	}
	h := names[0].Hosts
	if len(h) != 2 || h["web-0"][0] != netip.MustParseAddr("10.244.1.5") || h["web-1"][0] != netip.MustParseAddr("10.244.2.7") {
		t.Errorf("hosts = %v", h)
	}
}
