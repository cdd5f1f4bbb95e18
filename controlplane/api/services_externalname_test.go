package api

import (
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

func externalName(name, target string) *manifests.Service {
	s := &manifests.Service{}
	s.Name = name
	s.Spec.Type = manifests.ServiceTypeExternalName
	s.Spec.ExternalName = target
	return s
}

// ExternalName services take no cluster IP and need no ports or selector;
// a bad external name is refused naming spec.externalName.
func TestServiceExternalName(t *testing.T) {
	e := newServiceEnv(t, "10.96.0.0/29", 0)
	ctx := ctxT(t)
	ext := applySvc(t, e, externalName("ext", "db.example.com"))
	if ext.Spec.ClusterIP != "" || len(ext.Spec.ClusterIPs) != 0 || len(ext.Spec.Ports) != 0 {
		t.Fatalf("ExternalName service got %q %v ports %v, want no cluster IP", ext.Spec.ClusterIP, ext.Spec.ClusterIPs, ext.Spec.Ports)
	}
	// The ExternalName service took no address: the first one is still free.
	a := applySvc(t, e, service("a", "", ""))
	if a.Spec.ClusterIP != "10.96.0.1" {
		t.Fatalf("first ClusterIP service got %q, want 10.96.0.1", a.Spec.ClusterIP)
	}
	// Turning a ClusterIP service into an ExternalName one releases its IP.
	conv := externalName("a", "other.example.com")
	if got := applySvc(t, e, conv); got.Spec.ClusterIP != "" || got.Spec.ExternalName != "other.example.com" {
		t.Fatalf("converted service: clusterIP %q externalName %q", got.Spec.ClusterIP, got.Spec.ExternalName)
	}
	if b := applySvc(t, e, service("b", "", "")); b.Spec.ClusterIP != "10.96.0.1" {
		t.Fatalf("after conversion got %q, want the released 10.96.0.1", b.Spec.ClusterIP)
	}
	for _, tc := range []struct {
		svc  *manifests.Service
		want string
	}{
		{externalName("bad", "not a name!"), `spec.externalName: invalid value "not a name!"`},
		{externalName("bad", "Upper.Example.com"), `spec.externalName: invalid value "Upper.Example.com"`},
		{externalName("bad", ""), "spec.externalName: required"},
		{func() *manifests.Service {
			s := externalName("bad", "db.example.com")
			s.Spec.ClusterIP = "10.96.0.3"
			return s
		}(), "spec.clusterIP"},
	} {
		_, _, err := e.c.Apply(ctx, tc.svc)
		if client.CodeOf(err) != client.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("apply externalName %q clusterIP %q: %v, want Invalid naming %q", tc.svc.Spec.ExternalName, tc.svc.Spec.ClusterIP, err, tc.want)
		}
	}
}
