package rbac

import (
	"context"
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// Labels of the built-in ClusterRoles.
const (
	BootstrapLabel = "kubernetes.io/bootstrapping"
	BootstrapValue = "rbac-defaults"
)

var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}
)

// viewRules are what `view` reads: every namespaced workload kind, not
// Secrets (as in Kubernetes), nor Roles and bindings.
func viewRules() []manifests.PolicyRule {
	return []manifests.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "pods/log", "pods/status", "services", "endpoints", "configmaps", "events",
			"persistentvolumeclaims", "resourcequotas", "limitranges", "namespaces"}, Verbs: readVerbs},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "daemonsets", "statefulsets", "deployments/scale", "statefulsets/scale"}, Verbs: readVerbs},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: readVerbs},
		{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: readVerbs},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: readVerbs},
		{APIGroups: []string{"edge.io"}, Resources: []string{"rollouts"}, Verbs: readVerbs},
	}
}

// editRules add the writes of every namespaced workload kind, Secrets
// included, and exec into pods.
func editRules() []manifests.PolicyRule {
	return append(viewRules(),
		manifests.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "pods/exec", "services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims", "events"}, Verbs: writeVerbs},
		manifests.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: readVerbs},
		manifests.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "daemonsets", "statefulsets", "deployments/scale", "statefulsets/scale"}, Verbs: writeVerbs},
		manifests.PolicyRule{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: writeVerbs},
		manifests.PolicyRule{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: writeVerbs},
		manifests.PolicyRule{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: writeVerbs},
		manifests.PolicyRule{APIGroups: []string{"edge.io"}, Resources: []string{"rollouts"}, Verbs: writeVerbs},
	)
}

// adminRules add Roles and RoleBindings (a namespace's own access) and
// the namespace's quotas and limit ranges.
func adminRules() []manifests.PolicyRule {
	return append(editRules(),
		manifests.PolicyRule{APIGroups: []string{manifests.RBACGroup}, Resources: []string{"roles", "rolebindings"}, Verbs: append(append([]string{}, readVerbs...), writeVerbs...)},
		manifests.PolicyRule{APIGroups: []string{""}, Resources: []string{"resourcequotas", "limitranges"}, Verbs: writeVerbs},
	)
}

// DefaultClusterRoles are the built-in roles: view, edit, admin (meant
// for RoleBindings in a namespace) and cluster-admin (everything).
func DefaultClusterRoles() []*manifests.ClusterRole {
	mk := func(name string, rules []manifests.PolicyRule) *manifests.ClusterRole {
		cr := &manifests.ClusterRole{Rules: rules}
		cr.Name = name
		cr.Labels = map[string]string{BootstrapLabel: BootstrapValue}
		return cr
	}
	return []*manifests.ClusterRole{
		mk("view", viewRules()),
		mk("edit", editRules()),
		mk("admin", adminRules()),
		mk("cluster-admin", []manifests.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}),
	}
}

// Creator is what EnsureDefaults needs of the store.
type Creator interface {
	Create(ctx context.Context, obj manifests.Object) (manifests.Object, error)
}

// EnsureDefaults creates the built-in ClusterRoles that are missing; one
// that exists (perhaps edited by an operator) is left as it is.
func EnsureDefaults(ctx context.Context, st Creator) error {
	for _, cr := range DefaultClusterRoles() {
		manifests.Default(cr)
		if _, err := st.Create(ctx, cr); err != nil && client.CodeOf(err) != client.CodeExists {
			return fmt.Errorf("create default ClusterRole %s: %w", cr.Name, err)
		}
	}
	return nil
}
