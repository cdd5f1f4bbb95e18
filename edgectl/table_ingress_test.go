package edgectl

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestIngressTable(t *testing.T) {
	class := "edge"
	a := &manifests.Ingress{ObjectMeta: meta("default", "web", time.Hour)}
	a.Spec.IngressClassName = &class
	a.Spec.Rules = []manifests.IngressRule{{Host: "a.example.com"}, {Host: "*.example.org"}}
	a.Spec.TLS = []manifests.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "a-tls"}}
	a.Status.LoadBalancer.Ingress = []manifests.IngressLoadBalancerIngress{{IP: "192.0.2.1"}, {Hostname: "edge-1"}}
	b := &manifests.Ingress{ObjectMeta: meta("default", "default-only", time.Hour)}
	b.Spec.DefaultBackend = &manifests.IngressBackend{Service: &manifests.IngressServiceBackend{Name: "s", Port: manifests.ServiceBackendPort{Number: 80}}}
	checkRows(t, tableText(t, "ing", []manifests.Object{a, b}, tableOptions{Now: tableNow}),
		"NAME | CLASS | HOSTS | ADDRESS | PORTS | AGE",
		"web | edge | a.example.com,*.example.org | 192.0.2.1,edge-1 | 80, 443 | 60m",
		"default-only | <none> | * |  | 80 | 60m")
}
