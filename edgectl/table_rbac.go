package edgectl

import (
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// roleHeaders are kubectl's columns for a Role or ClusterRole.
func roleHeaders() []string { return []string{"NAME", "CREATED AT"} }

func roleRow(meta *manifests.ObjectMeta, name string) []string {
	return []string{name, meta.CreationTimestamp.UTC().Format(time.RFC3339)}
}

// bindingHeaders are kubectl's columns for a RoleBinding or
// ClusterRoleBinding (wide: the users and groups).
func bindingHeaders(wide bool) []string {
	h := []string{"NAME", "ROLE", "AGE"}
	if wide {
		h = append(h, "USERS", "GROUPS")
	}
	return h
}

func bindingRow(ref manifests.RoleRef, subjects []manifests.Subject, name, created string, wide bool) []string {
	row := []string{name, ref.Kind + "/" + ref.Name, created}
	if wide {
		var users, groups []string
		for _, s := range subjects {
			switch s.Kind {
			case manifests.SubjectKindUser:
				users = append(users, s.Name)
			case manifests.SubjectKindGroup:
				groups = append(groups, s.Name)
			}
		}
		row = append(row, strings.Join(users, ", "), strings.Join(groups, ", "))
	}
	return row
}
