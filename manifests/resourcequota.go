package manifests

import (
	"fmt"
	"strings"
)

// ResourceQuota (v1) caps the compute resources and object counts of a
// namespace; it is enforced when objects are created.
type ResourceQuota struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ResourceQuotaSpec   `json:"spec"`
	Status     ResourceQuotaStatus `json:"status,omitzero"`
}

// ResourceQuotaSpec holds the hard limits.
type ResourceQuotaSpec struct {
	Hard ResourceList `json:"hard,omitempty"`
}

// ResourceQuotaStatus is what is enforced (hard) and what is in use.
type ResourceQuotaStatus struct {
	Hard ResourceList `json:"hard,omitempty"`
	Used ResourceList `json:"used,omitempty"`
}

// quotaComputeNames are the compute names a quota may limit.
var quotaComputeNames = map[string]bool{
	"cpu": true, "memory": true, "requests.cpu": true, "requests.memory": true,
	"limits.cpu": true, "limits.memory": true, "pods": true,
}

// QuotaCountNames maps the short object-count names Kubernetes accepts to
// their resource (count/<resource> is accepted for every namespaced kind).
var QuotaCountNames = map[string]string{
	"configmaps": "configmaps", "secrets": "secrets", "services": "services",
	"resourcequotas": "resourcequotas",
}

// QuotaCountResource returns the resource a count name (count/deployments.apps,
// count/pods, configmaps) counts, or "" when name is not a count.
func QuotaCountResource(name string) string {
	if r, ok := QuotaCountNames[name]; ok {
		return r
	}
	rest, ok := strings.CutPrefix(name, "count/")
	if !ok {
		return ""
	}
	res, group, _ := strings.Cut(rest, ".")
	k, err := KindForResource(res)
	if err != nil || !k.Namespaced || k.Resource != res {
		return ""
	}
	g := ""
	if i := strings.Index(k.APIVersion, "/"); i >= 0 {
		g = k.APIVersion[:i]
	}
	if g != group {
		return ""
	}
	return k.Resource
}

func validateResourceQuota(l *errList, q *ResourceQuota) {
	for _, name := range sortedKeys(q.Spec.Hard) {
		p := "spec.hard[" + name + "]"
		if !quotaComputeNames[name] && QuotaCountResource(name) == "" {
			l.invalid(p, name, "unsupported quota resource: want cpu, memory, requests.cpu, requests.memory, limits.cpu, limits.memory, pods, configmaps, secrets, services or count/<resource>.<group> of a supported namespaced kind (e.g. count/deployments.apps)")
			continue
		}
		ok := validateQuantity(l, p, q.Spec.Hard[name])
		if ok && (QuotaCountResource(name) != "" || name == "pods") {
			if v := q.Spec.Hard[name]; v.MilliValue()%1000 != 0 {
				l.invalid(p, string(v), fmt.Sprintf("%s must be a whole number", name))
			}
		}
	}
}
