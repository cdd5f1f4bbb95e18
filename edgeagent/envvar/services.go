package envvar

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

// ServiceEnv returns the Docker-links style variables Kubernetes sets for
// the services of namespace ns that have a cluster IP ({SVC}_SERVICE_HOST,
// {SVC}_SERVICE_PORT, {SVC}_SERVICE_PORT_{NAME}, {SVC}_PORT and
// {SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]), services sorted by name.
func ServiceEnv(ns string, svcs []manifests.Service) []runtime.KeyValue {
	var sel []*manifests.Service
	for i := range svcs {
		s := &svcs[i]
		ip := s.Spec.ClusterIP
		if s.Namespace != ns || ip == "" || ip == manifests.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		sel = append(sel, s)
	}
	slices.SortFunc(sel, func(a, b *manifests.Service) int { return cmp.Compare(a.Name, b.Name) })
	var out []runtime.KeyValue
	add := func(k, v string) { out = append(out, runtime.KeyValue{Key: k, Value: v}) }
	for _, s := range sel {
		prefix := envName(s.Name)
		ip := s.Spec.ClusterIP
		add(prefix+"_SERVICE_HOST", ip)
		add(prefix+"_SERVICE_PORT", strconv.Itoa(int(s.Spec.Ports[0].Port)))
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				add(prefix+"_SERVICE_PORT_"+envName(p.Name), strconv.Itoa(int(p.Port)))
			}
		}
		for i, p := range s.Spec.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "TCP"
			}
			lower := strings.ToLower(proto)
			url := fmt.Sprintf("%s://%s", lower, net.JoinHostPort(ip, strconv.Itoa(int(p.Port))))
			if i == 0 {
				add(prefix+"_PORT", url)
			}
			pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
			add(pp, url)
			add(pp+"_PROTO", lower)
			add(pp+"_PORT", strconv.Itoa(int(p.Port)))
			add(pp+"_ADDR", ip)
		}
	}
	return out
}

func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
