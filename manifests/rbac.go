package manifests

import (
	"fmt"
	"strings"
)

// RBAC kinds (rbac.authorization.k8s.io/v1): who may do what through the
// API (docs/rbac.md). The control plane's authorizer reads them.

// RBACGroup is the API group of the RBAC kinds (and of RoleRef.APIGroup).
const RBACGroup = "rbac.authorization.k8s.io"

// Subject kinds supported (ServiceAccount is not: pods do not call the API).
const (
	SubjectKindUser  = "User"
	SubjectKindGroup = "Group"
)

// RBAC verbs (VerbAll, "*", matches every verb).
const VerbAll = "*"

// RBACVerbs are the verbs a rule may name.
var RBACVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", VerbAll}

// Role grants rules in its own namespace.
type Role struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Rules      []PolicyRule `json:"rules,omitempty"`
}

// ClusterRole grants rules in every namespace (through a
// ClusterRoleBinding) or in one (through a RoleBinding).
type ClusterRole struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Rules      []PolicyRule `json:"rules,omitempty"`
	// AggregationRule is refused (declared only to say so by name).
	AggregationRule *AggregationRule `json:"aggregationRule,omitempty"`
}

// AggregationRule is Kubernetes' ClusterRole aggregation; not supported.
type AggregationRule struct {
	ClusterRoleSelectors []LabelSelector `json:"clusterRoleSelectors,omitempty"`
}

// PolicyRule allows verbs on resources of API groups, optionally only on
// some names.
type PolicyRule struct {
	Verbs         []string `json:"verbs"`
	APIGroups     []string `json:"apiGroups,omitempty"`
	Resources     []string `json:"resources,omitempty"`
	ResourceNames []string `json:"resourceNames,omitempty"`
	// NonResourceURLs is refused: the API has no URLs.
	NonResourceURLs []string `json:"nonResourceURLs,omitempty"`
}

// RoleBinding grants a Role (or a ClusterRole) to subjects in its own
// namespace.
type RoleBinding struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Subjects   []Subject `json:"subjects,omitempty"`
	RoleRef    RoleRef   `json:"roleRef"`
}

// ClusterRoleBinding grants a ClusterRole to subjects in every namespace.
type ClusterRoleBinding struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Subjects   []Subject `json:"subjects,omitempty"`
	RoleRef    RoleRef   `json:"roleRef"`
}

// Subject is a User or a Group.
type Subject struct {
	Kind      string `json:"kind"`
	APIGroup  string `json:"apiGroup,omitempty"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// RoleRef names the role a binding grants.
type RoleRef struct {
	APIGroup string `json:"apiGroup"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
}

// validateRBAC checks the four RBAC kinds.
func validateRBAC(l *errList, obj Object) {
	switch o := obj.(type) {
	case *Role:
		validateRules(l, o.Rules)
	case *ClusterRole:
		if o.AggregationRule != nil {
			l.add("aggregationRule", "not supported: list the rules of the ClusterRole in rules (docs/rbac.md)")
		}
		validateRules(l, o.Rules)
	case *RoleBinding:
		validateSubjects(l, o.Subjects)
		validateRoleRef(l, o.RoleRef, "Role", "ClusterRole")
	case *ClusterRoleBinding:
		validateSubjects(l, o.Subjects)
		validateRoleRef(l, o.RoleRef, "ClusterRole")
	}
}

func validateRules(l *errList, rules []PolicyRule) {
	for i, r := range rules {
		p := fmt.Sprintf("rules[%d]", i)
		if len(r.Verbs) == 0 {
			l.required(p + ".verbs")
		}
		for j, v := range r.Verbs {
			if !oneOf(v, RBACVerbs...) {
				l.unsupported(fmt.Sprintf("%s.verbs[%d]", p, j), v, RBACVerbs...)
			}
		}
		if len(r.NonResourceURLs) > 0 {
			l.add(p+".nonResourceURLs", "not supported: the API has no URLs, rules name resources")
		}
		if len(r.Resources) == 0 {
			l.required(p + ".resources")
		}
		if len(r.APIGroups) == 0 {
			l.add(p+".apiGroups", `required: "" is the core group, "*" every group`)
		}
		for j, g := range r.APIGroups {
			if g != "" && g != "*" {
				if err := ValidateDNSSubdomain(g); err != nil {
					l.invalid(fmt.Sprintf("%s.apiGroups[%d]", p, j), g, err.Error())
				}
			}
		}
		for j, res := range r.Resources {
			if !validRuleResource(res) {
				l.invalid(fmt.Sprintf("%s.resources[%d]", p, j), res, `must be "*", a resource ("pods"), a subresource ("pods/log") or "*/subresource"`)
			}
		}
		for j, n := range r.ResourceNames {
			if n == "" || strings.ContainsAny(n, "/%") {
				l.invalid(fmt.Sprintf("%s.resourceNames[%d]", p, j), n, "must be an object name")
			}
		}
	}
}

func validRuleResource(res string) bool {
	if res == "*" {
		return true
	}
	name, sub, hasSub := strings.Cut(res, "/")
	token := func(s string) bool {
		if s == "" || len(s) > 253 {
			return false
		}
		for _, c := range s {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				return false
			}
		}
		return true
	}
	if !hasSub {
		return token(name)
	}
	return (name == "*" || token(name)) && (sub == "*" || token(sub)) && !strings.Contains(sub, "/")
}

func validateSubjects(l *errList, subjects []Subject) {
	for i, s := range subjects {
		p := fmt.Sprintf("subjects[%d]", i)
		switch s.Kind {
		case SubjectKindUser, SubjectKindGroup:
		case "ServiceAccount":
			l.add(p+".kind", "ServiceAccount is not supported: pods do not call the API; bind a User or a Group (docs/rbac.md)")
			continue
		case "":
			l.required(p + ".kind")
			continue
		default:
			l.unsupported(p+".kind", s.Kind, SubjectKindUser, SubjectKindGroup)
			continue
		}
		if s.APIGroup != "" && s.APIGroup != RBACGroup {
			l.unsupported(p+".apiGroup", s.APIGroup, RBACGroup)
		}
		if s.Name == "" {
			l.required(p + ".name")
		}
		if s.Namespace != "" {
			l.add(p+".namespace", "forbidden: a %s has no namespace", s.Kind)
		}
	}
}

func validateRoleRef(l *errList, r RoleRef, kinds ...string) {
	if r.APIGroup != RBACGroup {
		if r.APIGroup == "" {
			l.required("roleRef.apiGroup")
		} else {
			l.unsupported("roleRef.apiGroup", r.APIGroup, RBACGroup)
		}
	}
	switch {
	case r.Kind == "":
		l.required("roleRef.kind")
	case !oneOf(r.Kind, kinds...):
		l.unsupported("roleRef.kind", r.Kind, kinds...)
	}
	if r.Name == "" {
		l.required("roleRef.name")
	} else if err := ValidateDNSSubdomain(r.Name); err != nil {
		l.invalid("roleRef.name", r.Name, err.Error())
	}
}

// APIGroupOf is the API group of a kind ("" for the core group v1).
func APIGroupOf(k Kind) string {
	if i := strings.LastIndexByte(k.APIVersion, '/'); i >= 0 {
		return k.APIVersion[:i]
	}
	return ""
}
