package edgeagent

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

// Pod DNS policies (pod.spec.dnsPolicy).
const (
	dnsClusterFirst            = "ClusterFirst"
	dnsClusterFirstWithHostNet = "ClusterFirstWithHostNet"
	dnsDefault                 = "Default"
	dnsNone                    = "None"
)

const (
	// clusterDomain is the DNS domain of Services (svc.ns.svc.cluster.local).
	clusterDomain = "cluster.local"
	// maxNameservers is how many nameservers a resolver uses (glibc).
	maxNameservers = 3
	// hostResolvConf is the host's resolver configuration.
	hostResolvConf = "/etc/resolv.conf"
)

// sandboxDNS is the resolver configuration of a new sandbox of pod: the
// cluster DNS server when the pod is on the pod network and the agent
// serves DNS on its gateway, per the pod's dnsPolicy and dnsConfig; nil
// for the host's resolv.conf unchanged.
func (w *podWorker) sandboxDNS(rt runtime.Runtime, pod *manifests.Pod) *runtime.DNSConfig {
	var cluster netip.Addr
	if w.podNetwork(rt) != nil {
		cluster = w.a.clusterDNS()
	}
	return podDNS(&pod.Spec, pod.Namespace, cluster, readHostResolvConf)
}

// clusterDNS is the address pods reach the agent's DNS server at: the pod
// bridge gateway when Config.DNSAddr is DNSAddrGateway and the pod network
// is up; else invalid.
func (a *Agent) clusterDNS() netip.Addr {
	if a.svc == nil || a.svc.dns == nil || a.cfg.DNSAddr != DNSAddrGateway || a.pnet == nil {
		return netip.Addr{}
	}
	n := a.pnet.Network()
	if n == nil {
		return netip.Addr{}
	}
	ip, ok := netip.AddrFromSlice(n.Gateway())
	if !ok {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// podDNS computes a pod's resolver configuration as the kubelet does.
// ClusterFirst (and ClusterFirstWithHostNet) with a cluster DNS server:
// that server, the namespace's search domains and ndots:5; Default (and
// ClusterFirst without cluster DNS or on the host network): the host's;
// None: nothing. spec.dnsConfig is merged in: nameservers and searches
// appended (duplicates dropped, at most maxNameservers servers), options
// replacing those of the same name. A nil result means the host's file
// as it is; host is read only when dnsConfig changes it.
func podDNS(spec *manifests.PodSpec, namespace string, cluster netip.Addr, host func() runtime.DNSConfig) *runtime.DNSConfig {
	policy := spec.DNSPolicy
	if policy == "" {
		policy = manifests.DefaultDNSPolicy
	}
	useCluster := cluster.IsValid() &&
		(policy == dnsClusterFirst && !spec.HostNetwork || policy == dnsClusterFirstWithHostNet)
	var cfg runtime.DNSConfig
	switch {
	case policy == dnsNone:
	case useCluster:
		cfg = runtime.DNSConfig{
			Servers:  []string{cluster.String()},
			Searches: []string{namespace + ".svc." + clusterDomain, "svc." + clusterDomain, clusterDomain},
			Options:  []string{"ndots:5"},
		}
	default:
		if spec.DNSConfig == nil {
			return nil
		}
		cfg = host()
	}
	if c := spec.DNSConfig; c != nil {
		for _, s := range c.Nameservers {
			if !slices.Contains(cfg.Servers, s) {
				cfg.Servers = append(cfg.Servers, s)
			}
		}
		for _, s := range c.Searches {
			if !slices.Contains(cfg.Searches, s) {
				cfg.Searches = append(cfg.Searches, s)
			}
		}
		for _, o := range c.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			i := slices.IndexFunc(cfg.Options, func(have string) bool {
				name, _, _ := strings.Cut(have, ":")
				return name == o.Name
			})
			if i >= 0 {
				cfg.Options[i] = opt
			} else {
				cfg.Options = append(cfg.Options, opt)
			}
		}
	}
	if len(cfg.Servers) > maxNameservers {
		cfg.Servers = cfg.Servers[:maxNameservers]
	}
	return &cfg
}

// readHostResolvConf parses the host's resolv.conf (empty if unreadable).
func readHostResolvConf() runtime.DNSConfig {
	data, err := os.ReadFile(hostResolvConf)
	if err != nil {
		return runtime.DNSConfig{}
	}
	return parseResolvConf(data)
}

// parseResolvConf reads nameserver, search (or domain: the last of the
// two wins) and options lines; comments start with '#' or ';'.
func parseResolvConf(data []byte) runtime.DNSConfig {
	var cfg runtime.DNSConfig
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			cfg.Servers = append(cfg.Servers, f[1])
		case "search":
			cfg.Searches = slices.Clone(f[1:])
		case "domain":
			cfg.Searches = []string{f[1]}
		case "options":
			cfg.Options = append(cfg.Options, f[1:]...)
		}
	}
	return cfg
}
