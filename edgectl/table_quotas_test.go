package edgectl

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestQuotaAndLimitRangeTables(t *testing.T) {
	q := &manifests.ResourceQuota{ObjectMeta: meta("default", "compute", time.Hour)}
	q.Spec.Hard = manifests.ResourceList{"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}
	q.Status.Hard = q.Spec.Hard
	q.Status.Used = manifests.ResourceList{"pods": "1", "requests.cpu": "500m", "limits.memory": "256Mi"}
	checkRows(t, tableText(t, "quota", []manifests.Object{q}, tableOptions{Now: tableNow}),
		"NAME | AGE | REQUEST | LIMIT",
		"compute | 60m | pods: 1/2, requests.cpu: 500m/1 | limits.memory: 256Mi/1Gi")
	lr := &manifests.LimitRange{ObjectMeta: meta("default", "defaults", time.Hour)}
	checkRows(t, tableText(t, "limits", []manifests.Object{lr}, tableOptions{Now: tableNow}),
		"NAME | CREATED AT",
		"defaults | "+lr.CreationTimestamp.UTC().Format(time.RFC3339))
}
