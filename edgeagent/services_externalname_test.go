package edgeagent

import (
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

// An ExternalName service reaches DNS as an alias and never the proxy.
func TestToSnapshotExternalName(t *testing.T) {
	ext := &manifests.Service{Spec: manifests.ServiceSpec{Type: manifests.ServiceTypeExternalName, ExternalName: "db.example.com"}}
	ext.Namespace, ext.Name = "default", "ext"
	web := &manifests.Service{Spec: manifests.ServiceSpec{Type: manifests.ServiceTypeClusterIP, ClusterIP: "10.96.0.10",
		Ports: []manifests.ServicePort{{Port: 80, Protocol: "TCP", TargetPort: manifests.FromInt(8080)}}}}
	web.Namespace, web.Name = "default", "web"
	snap, names := toSnapshot(map[string]*manifests.Service{"default/ext": ext, "default/web": web}, nil)
	if len(snap.Services) != 1 || snap.Services[0].Name != "web" {
		t.Fatalf("proxy services = %+v, want web only", snap.Services)
	}
	found := false
	for _, n := range names {
		if n.Name == "ext" {
			found = true
			if n.ExternalName != "db.example.com" || len(n.IPs) != 0 {
				t.Errorf("dns entry for ext = %+v, want an alias of db.example.com", n)
			}
		}
	}
	if !found || len(names) != 2 {
		t.Fatalf("dns names = %+v, want web and ext", names)
	}
}
