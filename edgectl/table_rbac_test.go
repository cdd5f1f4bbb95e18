package edgectl

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestRBACTables(t *testing.T) {
	r := &manifests.ClusterRole{ObjectMeta: meta("", "view", time.Hour)}
	checkRows(t, tableText(t, "clusterroles", []manifests.Object{r}, tableOptions{Now: tableNow}),
		"NAME | CREATED AT",
		"view | "+r.CreationTimestamp.UTC().Format(time.RFC3339))
	rb := &manifests.RoleBinding{ObjectMeta: meta("default", "ops", 2*time.Hour),
		RoleRef:  manifests.RoleRef{APIGroup: manifests.RBACGroup, Kind: "ClusterRole", Name: "edit"},
		Subjects: []manifests.Subject{{Kind: "User", Name: "alice"}, {Kind: "Group", Name: "ops"}, {Kind: "User", Name: "bob"}}}
	checkRows(t, tableText(t, "rolebindings", []manifests.Object{rb}, tableOptions{Now: tableNow}),
		"NAME | ROLE | AGE",
		"ops | ClusterRole/edit | 120m")
	checkRows(t, tableText(t, "rolebindings", []manifests.Object{rb}, tableOptions{Now: tableNow, Wide: true}),
		"NAME | ROLE | AGE | USERS | GROUPS",
		"ops | ClusterRole/edit | 120m | alice, bob | ops")
}
