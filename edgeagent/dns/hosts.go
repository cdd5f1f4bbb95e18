package dns

import (
	"net/netip"
	"strings"
)

// Pod host names: a pod with spec.hostname and spec.subdomain selected by
// the headless Service named like its subdomain (a StatefulSet's pods)
// answers as <hostname>.<service>.<namespace>.svc.<domain> (and
// <hostname>.<service>.<namespace>.svc), with its own IP, as Kubernetes'
// DNS does. Service.Hosts carries them; they share the names map with the
// services under the key "<hostname>.<service>.<namespace>", which never
// collides with a service key "<service>.<namespace>" (names are DNS
// labels, without dots).

// addHosts adds sv's pod host names to m.
func addHosts(m map[string]entry, sv Service) {
	for h, ips := range sv.Hosts {
		if h == "" || len(ips) == 0 {
			continue
		}
		m[strings.ToLower(h+"."+sv.Name+"."+sv.Namespace)] = entry{ips: append([]netip.Addr(nil), ips...)}
	}
}

// lookupHost resolves the labels l of a name without the cluster domain
// when they are <hostname>.<service>.<namespace>.svc.
func lookupHost(names map[string]entry, l []string) (entry, bool) {
	if len(l) != 4 || l[3] != "svc" {
		return entry{}, false
	}
	e, ok := names[l[0]+"."+l[1]+"."+l[2]]
	return e, ok
}
