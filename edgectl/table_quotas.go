package edgectl

import (
	"sort"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// quotaHeaders are kubectl's columns for a ResourceQuota.
func quotaHeaders() []string { return []string{"NAME", "AGE", "REQUEST", "LIMIT"} }

// quotaRow prints used/hard per resource, limits.* under LIMIT and the
// rest under REQUEST, as kubectl does.
func quotaRow(q *manifests.ResourceQuota, name, created string) []string {
	hard := q.Status.Hard
	if len(hard) == 0 {
		hard = q.Spec.Hard
	}
	names := make([]string, 0, len(hard))
	for n := range hard {
		names = append(names, n)
	}
	sort.Strings(names)
	var req, lim []string
	for _, n := range names {
		used := q.Status.Used[n]
		if used == "" {
			used = "0"
		}
		cell := n + ": " + string(used) + "/" + string(hard[n])
		if strings.HasPrefix(n, "limits.") {
			lim = append(lim, cell)
		} else {
			req = append(req, cell)
		}
	}
	return []string{name, created, strings.Join(req, ", "), strings.Join(lim, ", ")}
}

// limitRangeHeaders are kubectl's columns for a LimitRange.
func limitRangeHeaders() []string { return []string{"NAME", "CREATED AT"} }

func limitRangeRow(lr *manifests.LimitRange, name string) []string {
	return []string{name, lr.CreationTimestamp.UTC().Format(time.RFC3339)}
}
