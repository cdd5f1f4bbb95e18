package edgeagent

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

func TestPodDNS(t *testing.T) {
	gw := netip.MustParseAddr("10.244.1.1")
	hostCfg := runtime.DNSConfig{Servers: []string{"192.168.1.1"}, Searches: []string{"lan"}, Options: []string{"ndots:1", "edns0"}}
	hostReads := 0
	host := func() runtime.DNSConfig {
		hostReads++
		return hostCfg
	}
	two, one := "2", "1"
	clusterSearch := []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"}
	tests := []struct {
		name    string
		spec    manifests.PodSpec
		cluster netip.Addr
		want    *runtime.DNSConfig
	}{
		{"cluster first", manifests.PodSpec{DNSPolicy: "ClusterFirst"}, gw,
			&runtime.DNSConfig{Servers: []string{"10.244.1.1"}, Searches: clusterSearch, Options: []string{"ndots:5"}}},
		{"empty policy is cluster first", manifests.PodSpec{}, gw,
			&runtime.DNSConfig{Servers: []string{"10.244.1.1"}, Searches: clusterSearch, Options: []string{"ndots:5"}}},
		{"cluster first without cluster DNS", manifests.PodSpec{DNSPolicy: "ClusterFirst"}, netip.Addr{}, nil},
		{"cluster first on the host network", manifests.PodSpec{DNSPolicy: "ClusterFirst", HostNetwork: true}, gw, nil},
		{"cluster first with host net", manifests.PodSpec{DNSPolicy: "ClusterFirstWithHostNet", HostNetwork: true}, gw,
			&runtime.DNSConfig{Servers: []string{"10.244.1.1"}, Searches: clusterSearch, Options: []string{"ndots:5"}}},
		{"default", manifests.PodSpec{DNSPolicy: "Default"}, gw, nil},
		{"cluster first merges dnsConfig", manifests.PodSpec{DNSPolicy: "ClusterFirst", DNSConfig: &manifests.PodDNSConfig{
			Nameservers: []string{"10.0.0.53", "10.244.1.1"},
			Searches:    []string{"corp.example", "cluster.local"},
			Options:     []manifests.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "single-request"}},
		}}, gw, &runtime.DNSConfig{
			Servers:  []string{"10.244.1.1", "10.0.0.53"},
			Searches: append(append([]string(nil), clusterSearch...), "corp.example"),
			Options:  []string{"ndots:2", "single-request"},
		}},
		{"default merges dnsConfig into the host's", manifests.PodSpec{DNSPolicy: "Default", DNSConfig: &manifests.PodDNSConfig{
			Nameservers: []string{"1.1.1.1", "8.8.8.8", "9.9.9.9"},
			Options:     []manifests.PodDNSConfigOption{{Name: "ndots", Value: &one}, {Name: "timeout", Value: &two}},
		}}, gw, &runtime.DNSConfig{
			Servers:  []string{"192.168.1.1", "1.1.1.1", "8.8.8.8"},
			Searches: []string{"lan"},
			Options:  []string{"ndots:1", "edns0", "timeout:2"},
		}},
		{"none", manifests.PodSpec{DNSPolicy: "None", DNSConfig: &manifests.PodDNSConfig{
			Nameservers: []string{"10.0.0.53"}, Searches: []string{"a.example"},
		}}, gw, &runtime.DNSConfig{Servers: []string{"10.0.0.53"}, Searches: []string{"a.example"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hostReads = 0
			got := podDNS(&tt.spec, "shop", tt.cluster, host)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("podDNS = %+v, want %+v", got, tt.want)
			}
			usesHost := tt.spec.DNSConfig != nil && (tt.spec.DNSPolicy == "Default")
			if (hostReads > 0) != usesHost {
				t.Fatalf("host resolv.conf read %d times", hostReads)
			}
		})
	}
	if !reflect.DeepEqual(hostCfg.Options, []string{"ndots:1", "edns0"}) {
		t.Fatalf("merging changed the host's options: %v", hostCfg.Options)
	}
}

func TestParseResolvConf(t *testing.T) {
	got := parseResolvConf([]byte(`# generated
nameserver 192.168.1.1
nameserver 192.168.1.2 ; second
domain old.example
search a.example b.example
options ndots:2
options edns0 rotate
garbage
`))
	want := runtime.DNSConfig{
		Servers:  []string{"192.168.1.1", "192.168.1.2"},
		Searches: []string{"a.example", "b.example"},
		Options:  []string{"ndots:2", "edns0", "rotate"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseResolvConf = %+v, want %+v", got, want)
	}
}

// TestSandboxDNSNeedsGatewayDNS: pods get the cluster DNS server only when
// the agent serves DNS on the pod network gateway; without a pod network
// (here) or with DNS elsewhere they keep the host's resolv.conf.
func TestSandboxDNSNeedsGatewayDNS(t *testing.T) {
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "shop"}, Spec: manifests.PodSpec{DNSPolicy: "ClusterFirst"}}
	for _, dnsAddr := range []string{"", DNSAddrGateway, "127.0.0.1:5353"} {
		a := &Agent{cfg: Config{DNSAddr: dnsAddr}}
		if dnsAddr != "" {
			a.svc = newServices(a)
		}
		if ip := a.clusterDNS(); ip.IsValid() {
			t.Fatalf("DNSAddr %q without a pod network: cluster DNS %v", dnsAddr, ip)
		}
		w := &podWorker{a: a}
		if got := w.sandboxDNS(newFakeRuntime(), pod); got != nil {
			t.Fatalf("DNSAddr %q: sandbox DNS %+v, want the host's", dnsAddr, got)
		}
	}
}
