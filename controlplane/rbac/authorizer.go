// Package rbac authorizes the requests of RBAC users (docs/rbac.md): the
// Roles, ClusterRoles, RoleBindings and ClusterRoleBindings are cached by
// informers, so that one decision reads only memory, and matched with
// Kubernetes' rules (verbs, API groups, resources and subresources,
// resourceNames; "*" everywhere).
package rbac

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// GroupAuthenticated is the group every RBAC user is in.
const GroupAuthenticated = "system:authenticated"

// Attributes describe one request to authorize, as Kubernetes does.
type Attributes struct {
	Verb        string // get list watch create update patch delete deletecollection
	APIGroup    string // "" for the core group
	Resource    string // plural, e.g. "pods"
	Subresource string // e.g. "log", "exec", "status"
	// Namespace is the namespace of the object, "" for a cluster-scoped
	// resource or a request across all namespaces.
	Namespace string
	Name      string // "" for list and create without a name
}

// ResourcePath is resource or resource/subresource.
func (a Attributes) ResourcePath() string {
	if a.Subresource == "" {
		return a.Resource
	}
	return a.Resource + "/" + a.Subresource
}

// ForbiddenMessage is Kubernetes' message for a denied request.
func ForbiddenMessage(user string, a Attributes) string {
	what := a.Resource
	if a.APIGroup != "" {
		what += "." + a.APIGroup
	}
	if a.Subresource != "" {
		what += "/" + a.Subresource
	}
	if a.Name != "" && a.Verb != "create" { // as Kubernetes words it
		what += fmt.Sprintf(" %q", a.Name)
	}
	scope := "at the cluster scope"
	if a.Namespace != "" {
		scope = fmt.Sprintf("in the namespace %q", a.Namespace)
	}
	return fmt.Sprintf("%s is forbidden: User %q cannot %s resource %q in API group %q %s", what, user, a.Verb, a.ResourcePath(), a.APIGroup, scope)
}

// Authorizer decides from the cached RBAC objects. Run feeds it.
type Authorizer struct {
	roles, clusterRoles, bindings, clusterBindings *controller.Informer

	mu sync.RWMutex
	// bySubject indexes the RoleBindings by namespace, then subject
	// (subjectKey), then name: a decision reads only the bindings that
	// name the user or its groups.
	bySubject map[string]map[string]map[string]*manifests.RoleBinding
}

// subjectKey is the index key of a binding's subject.
func subjectKey(kind, name string) string { return kind + ":" + name }

// New returns an authorizer over the store w.
func New(w controller.Watcher) *Authorizer {
	a := &Authorizer{
		roles:           controller.NewInformer(w, "roles"),
		clusterRoles:    controller.NewInformer(w, "clusterroles"),
		bindings:        controller.NewInformer(w, "rolebindings"),
		clusterBindings: controller.NewInformer(w, "clusterrolebindings"),
		bySubject:       map[string]map[string]map[string]*manifests.RoleBinding{},
	}
	a.bindings.AddHandler(a.index)
	return a
}

func (a *Authorizer) index(old, cur manifests.Object) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rb, ok := old.(*manifests.RoleBinding); ok {
		byS := a.bySubject[rb.Namespace]
		for _, sub := range rb.Subjects {
			k := subjectKey(sub.Kind, sub.Name)
			delete(byS[k], rb.Name)
			if len(byS[k]) == 0 {
				delete(byS, k)
			}
		}
		if len(byS) == 0 {
			delete(a.bySubject, rb.Namespace)
		}
	}
	if rb, ok := cur.(*manifests.RoleBinding); ok {
		byS := a.bySubject[rb.Namespace]
		if byS == nil {
			byS = map[string]map[string]*manifests.RoleBinding{}
			a.bySubject[rb.Namespace] = byS
		}
		for _, sub := range rb.Subjects {
			k := subjectKey(sub.Kind, sub.Name)
			if byS[k] == nil {
				byS[k] = map[string]*manifests.RoleBinding{}
			}
			byS[k][rb.Name] = rb
		}
	}
}

// Run runs the informers until ctx is done.
func (a *Authorizer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, inf := range []*controller.Informer{a.roles, a.clusterRoles, a.bindings, a.clusterBindings} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.Run(ctx)
		}()
	}
	wg.Wait()
}

// WaitForSync blocks until every cache holds the stored state.
func (a *Authorizer) WaitForSync(ctx context.Context) error {
	for _, inf := range []*controller.Informer{a.roles, a.clusterRoles, a.bindings, a.clusterBindings} {
		if err := inf.WaitForSync(ctx); err != nil {
			return err
		}
	}
	return nil
}

// HasSynced reports whether every cache holds the stored state.
func (a *Authorizer) HasSynced() bool {
	return a.roles.HasSynced() && a.clusterRoles.HasSynced() && a.bindings.HasSynced() && a.clusterBindings.HasSynced()
}

// Decision is the answer to one request.
type Decision struct {
	Allowed bool
	// Reason names the binding and role that allowed it, or is the
	// forbidden message.
	Reason string
}

// Authorize decides whether user (in groups) may do attrs.
func (a *Authorizer) Authorize(user string, groups []string, attrs Attributes) Decision {
	allowed := ""
	a.visit(user, groups, attrs.Namespace, func(binding, role string, rules []manifests.PolicyRule) bool {
		for _, r := range rules {
			if RuleAllows(r, attrs) {
				allowed = fmt.Sprintf("RBAC: allowed by %s of %s to User %q", binding, role, user)
				return false
			}
		}
		return true
	})
	if allowed != "" {
		return Decision{Allowed: true, Reason: allowed}
	}
	return Decision{Reason: ForbiddenMessage(user, attrs)}
}

// RulesFor returns the rules that apply to user (in groups) in
// namespace ("" : only the cluster-wide ones), ClusterRoleBindings first.
func (a *Authorizer) RulesFor(user string, groups []string, namespace string) []manifests.PolicyRule {
	var out []manifests.PolicyRule
	a.visit(user, groups, namespace, func(_, _ string, rules []manifests.PolicyRule) bool {
		out = append(out, rules...)
		return true
	})
	return out
}

// visit calls f with the rules of each role bound to the subject, through
// the ClusterRoleBindings and then the RoleBindings of namespace, until f
// returns false. A binding whose role is missing grants nothing.
func (a *Authorizer) visit(user string, groups []string, namespace string, f func(binding, role string, rules []manifests.PolicyRule) bool) {
	for _, obj := range a.clusterBindings.List(manifests.Selector{}) {
		crb, ok := obj.(*manifests.ClusterRoleBinding)
		if !ok || !matchesSubject(crb.Subjects, user, groups) || crb.RoleRef.Kind != "ClusterRole" {
			continue
		}
		cr, ok := a.clusterRole(crb.RoleRef.Name)
		if !ok {
			continue
		}
		if !f(fmt.Sprintf("ClusterRoleBinding %q", crb.Name), fmt.Sprintf("ClusterRole %q", cr.Name), cr.Rules) {
			return
		}
	}
	if namespace == "" {
		return
	}
	a.mu.RLock()
	byS := a.bySubject[namespace]
	var rbs []*manifests.RoleBinding
	seen := map[string]bool{}
	add := func(k string) {
		for name, rb := range byS[k] {
			if !seen[name] {
				seen[name] = true
				rbs = append(rbs, rb)
			}
		}
	}
	add(subjectKey(manifests.SubjectKindUser, user))
	add(subjectKey(manifests.SubjectKindGroup, GroupAuthenticated))
	for _, g := range groups {
		add(subjectKey(manifests.SubjectKindGroup, g))
	}
	a.mu.RUnlock()
	sort.Slice(rbs, func(i, j int) bool { return rbs[i].Name < rbs[j].Name })
	for _, rb := range rbs {
		var rules []manifests.PolicyRule
		var role string
		switch rb.RoleRef.Kind {
		case "ClusterRole":
			cr, ok := a.clusterRole(rb.RoleRef.Name)
			if !ok {
				continue
			}
			rules, role = cr.Rules, fmt.Sprintf("ClusterRole %q", cr.Name)
		case "Role":
			obj, ok := a.roles.Get(namespace + "/" + rb.RoleRef.Name)
			r, isRole := obj.(*manifests.Role)
			if !ok || !isRole {
				continue
			}
			rules, role = r.Rules, fmt.Sprintf("Role %q", namespace+"/"+r.Name)
		default:
			continue
		}
		if !f(fmt.Sprintf("RoleBinding %q", namespace+"/"+rb.Name), role, rules) {
			return
		}
	}
}

func (a *Authorizer) clusterRole(name string) (*manifests.ClusterRole, bool) {
	obj, ok := a.clusterRoles.Get(name)
	if !ok {
		return nil, false
	}
	cr, ok := obj.(*manifests.ClusterRole)
	return cr, ok
}

// matchesSubject reports whether one of subjects is user or one of groups
// (GroupAuthenticated included).
func matchesSubject(subjects []manifests.Subject, user string, groups []string) bool {
	for _, s := range subjects {
		switch s.Kind {
		case manifests.SubjectKindUser:
			if s.Name == user {
				return true
			}
		case manifests.SubjectKindGroup:
			if s.Name == GroupAuthenticated {
				return true
			}
			for _, g := range groups {
				if s.Name == g {
					return true
				}
			}
		}
	}
	return false
}

// RuleAllows reports whether rule r allows attrs, as Kubernetes matches:
// verb, API group and resource (or resource/subresource; "*" matches all
// of them, "*/sub" a subresource of every resource) must each be listed
// or "*"; resourceNames, when present, must list the object's name.
func RuleAllows(r manifests.PolicyRule, attrs Attributes) bool {
	if !has(r.Verbs, attrs.Verb) || !has(r.APIGroups, attrs.APIGroup) {
		return false
	}
	res := attrs.ResourcePath()
	ok := false
	for _, rr := range r.Resources {
		if rr == "*" || rr == res || (attrs.Subresource != "" && rr == "*/"+attrs.Subresource) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	if len(r.ResourceNames) == 0 {
		return true
	}
	for _, n := range r.ResourceNames {
		if n == attrs.Name && attrs.Name != "" {
			return true
		}
	}
	return false
}

func has(list []string, v string) bool {
	for _, s := range list {
		if s == "*" || s == v {
			return true
		}
	}
	return false
}

// Describe renders rules as `auth can-i --list` prints them: one line per
// rule, "resources [names] [verbs]".
func Describe(rules []manifests.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		var res []string
		for _, rr := range r.Resources {
			for _, g := range r.APIGroups {
				switch {
				case g == "":
					res = append(res, rr)
				default:
					res = append(res, rr+"."+g)
				}
			}
		}
		out = append(out, fmt.Sprintf("%s\t[%s]\t[%s]", strings.Join(res, ","), strings.Join(r.ResourceNames, " "), strings.Join(r.Verbs, " ")))
	}
	return out
}

// Rules returns the rules of the role a binding's roleRef names: a Role
// in namespace or a ClusterRole.
func (a *Authorizer) Rules(kind, namespace, name string) ([]manifests.PolicyRule, bool) {
	switch kind {
	case "ClusterRole":
		cr, ok := a.clusterRole(name)
		if !ok {
			return nil, false
		}
		return cr.Rules, true
	case "Role":
		obj, ok := a.roles.Get(namespace + "/" + name)
		r, isRole := obj.(*manifests.Role)
		if !ok || !isRole {
			return nil, false
		}
		return r.Rules, true
	}
	return nil, false
}
