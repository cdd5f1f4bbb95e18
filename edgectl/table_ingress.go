package edgectl

import (
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// ingressHeaders are the columns of ingresses, as kubectl prints them.
func ingressHeaders() []string {
	return []string{"NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"}
}

// ingressRow: CLASS is spec.ingressClassName; HOSTS the rules' hosts ("*"
// for a rule without host); ADDRESS the status's addresses; PORTS "80",
// or "80, 443" when the Ingress has TLS entries.
func ingressRow(ing *manifests.Ingress, name, created string) []string {
	class := "<none>"
	if c := ing.Spec.IngressClassName; c != nil && *c != "" {
		class = *c
	}
	var hosts []string
	for _, r := range ing.Spec.Rules {
		h := r.Host
		if h == "" {
			h = "*"
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		hosts = []string{"*"}
	}
	var addrs []string
	for _, a := range ing.Status.LoadBalancer.Ingress {
		if a.IP != "" {
			addrs = append(addrs, a.IP)
		} else if a.Hostname != "" {
			addrs = append(addrs, a.Hostname)
		}
	}
	ports := "80"
	if len(ing.Spec.TLS) > 0 {
		ports = "80, 443"
	}
	return []string{name, class, strings.Join(hosts, ","), strings.Join(addrs, ","), ports, created}
}
