package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// The pods of a StatefulSet answer under their headless Service:
// <hostname>.<service>.<namespace>.svc(.<domain>), each with its own IP.
func TestPodHostNames(t *testing.T) {
	svcs := []Service{
		{Namespace: "prod", Name: "nginx", IPs: ips("10.244.1.5", "10.244.2.7"), Hosts: map[string][]netip.Addr{
			"web-0": ips("10.244.1.5"), "web-1": ips("10.244.2.7"),
		}},
		{Namespace: "prod", Name: "web-0", IPs: ips("10.96.0.30")}, // a service named like a pod
	}
	_, r := startServer(t, svcs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"web-0.nginx.prod.svc.cluster.local.", []string{"10.244.1.5"}},
		{"WEB-1.Nginx.prod.svc.cluster.local.", []string{"10.244.2.7"}},
		{"web-1.nginx.prod.svc.", []string{"10.244.2.7"}},
		{"nginx.prod.svc.cluster.local.", []string{"10.244.1.5", "10.244.2.7"}},
		{"web-0.prod.svc.cluster.local.", []string{"10.96.0.30"}},
	} {
		got, err := r.LookupHost(ctx, tc.name)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, name := range []string{"web-2.nginx.prod.svc.cluster.local.", "web-0.nginx.default.svc.cluster.local.", "web-0.other.prod.svc.cluster.local."} {
		_, err := r.LookupHost(ctx, name)
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("%s: err = %v, want not found", name, err)
		}
	}
}
