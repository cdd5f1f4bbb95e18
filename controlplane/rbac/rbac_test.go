package rbac

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/natstest"
)

func TestRuleAllows(t *testing.T) {
	rule := func(groups, resources, verbs []string, names ...string) manifests.PolicyRule {
		return manifests.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs, ResourceNames: names}
	}
	core := []string{""}
	cases := []struct {
		r    manifests.PolicyRule
		at   Attributes
		want bool
	}{
		{rule(core, []string{"pods"}, []string{"get"}), Attributes{Verb: "get", Resource: "pods"}, true},
		{rule(core, []string{"pods"}, []string{"get"}), Attributes{Verb: "list", Resource: "pods"}, false},
		{rule(core, []string{"pods"}, []string{"get"}), Attributes{Verb: "get", APIGroup: "apps", Resource: "pods"}, false},
		// A resource does not grant its subresources.
		{rule(core, []string{"pods"}, []string{"get"}), Attributes{Verb: "get", Resource: "pods", Subresource: "log"}, false},
		{rule(core, []string{"pods/log"}, []string{"get"}), Attributes{Verb: "get", Resource: "pods", Subresource: "log"}, true},
		{rule([]string{"*"}, []string{"*/log"}, []string{"get"}), Attributes{Verb: "get", Resource: "pods", Subresource: "log"}, true},
		{rule([]string{"*"}, []string{"*"}, []string{"*"}), Attributes{Verb: "deletecollection", APIGroup: "apps", Resource: "deployments", Subresource: "scale"}, true},
		{rule(core, []string{"configmaps"}, []string{"get"}, "a"), Attributes{Verb: "get", Resource: "configmaps", Name: "a"}, true},
		{rule(core, []string{"configmaps"}, []string{"get"}, "a"), Attributes{Verb: "get", Resource: "configmaps", Name: "b"}, false},
		// resourceNames never match a request without a name.
		{rule(core, []string{"configmaps"}, []string{"list"}, "a"), Attributes{Verb: "list", Resource: "configmaps"}, false},
		// "*" asked (an escalation check) needs "*" granted.
		{rule(core, []string{"pods"}, []string{"get", "list"}), Attributes{Verb: "*", Resource: "pods"}, false},
	}
	for _, c := range cases {
		if got := RuleAllows(c.r, c.at); got != c.want {
			t.Errorf("%+v allows %+v: %v, want %v", c.r, c.at, got, c.want)
		}
	}
}

func TestDefaultsAndCaches(t *testing.T) {
	env := natstest.Start(t, "rbac")
	st := store.New(env.Buckets.Objects)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureDefaults(ctx, st); err != nil {
		t.Fatal(err)
	}
	// An operator narrows view; a second start leaves the edit alone.
	obj, err := st.Get(ctx, "clusterroles", "", "view")
	if err != nil {
		t.Fatal(err)
	}
	view := obj.(*manifests.ClusterRole)
	view.Rules = []manifests.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}
	if _, err := st.Update(ctx, view); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDefaults(ctx, st); err != nil {
		t.Fatal(err)
	}
	a := New(st)
	go a.Run(ctx)
	if err := a.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	rb := &manifests.RoleBinding{Subjects: []manifests.Subject{{Kind: "User", Name: "bob"}}, RoleRef: manifests.RoleRef{APIGroup: manifests.RBACGroup, Kind: "ClusterRole", Name: "view"}}
	rb.Name, rb.Namespace = "bob-view", "default"
	manifests.Default(rb)
	if _, err := st.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	pods := Attributes{Verb: "get", Resource: "pods", Namespace: "default", Name: "p"}
	cms := Attributes{Verb: "get", Resource: "configmaps", Namespace: "default", Name: "c"}
	deadline := time.Now().Add(5 * time.Second)
	for !a.Authorize("bob", nil, cms).Allowed {
		if time.Now().After(deadline) {
			t.Fatal("the binding never reached the cache")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := a.Authorize("bob", nil, pods); d.Allowed || !strings.Contains(d.Reason, `pods "p" is forbidden: User "bob" cannot get resource "pods" in API group "" in the namespace "default"`) {
		t.Fatalf("edited view still grants pods: %+v", d)
	}
	if d := a.Authorize("bob", nil, Attributes{Verb: "get", Resource: "configmaps", Namespace: "other", Name: "c"}); d.Allowed {
		t.Fatal("a RoleBinding granted outside its namespace")
	}
	// Deleting the binding takes the grant away.
	if _, err := st.Delete(ctx, "rolebindings", "default", "bob-view", 0); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for a.Authorize("bob", nil, cms).Allowed {
		if time.Now().After(deadline) {
			t.Fatal("the deleted binding still grants")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkAuthorize is one decision with 500 RoleBindings of other users
// in the namespace and 50 ClusterRoleBindings.
func BenchmarkAuthorize(b *testing.B) {
	env := natstest.Start(b, "rbac-bench")
	st := store.New(env.Buckets.Objects)
	ctx := context.Background()
	if err := EnsureDefaults(ctx, st); err != nil {
		b.Fatal(err)
	}
	bind := func(name, user string) {
		rb := &manifests.RoleBinding{Subjects: []manifests.Subject{{Kind: "User", Name: user}}, RoleRef: manifests.RoleRef{APIGroup: manifests.RBACGroup, Kind: "ClusterRole", Name: "edit"}}
		rb.Name, rb.Namespace = name, "default"
		manifests.Default(rb)
		if _, err := st.Create(ctx, rb); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 500 {
		bind(fmt.Sprintf("other-%d", i), fmt.Sprintf("u%d", i))
	}
	for i := range 50 {
		crb := &manifests.ClusterRoleBinding{Subjects: []manifests.Subject{{Kind: "Group", Name: fmt.Sprintf("g%d", i)}}, RoleRef: manifests.RoleRef{APIGroup: manifests.RBACGroup, Kind: "ClusterRole", Name: "view"}}
		crb.Name = fmt.Sprintf("crb-%d", i)
		manifests.Default(crb)
		if _, err := st.Create(ctx, crb); err != nil {
			b.Fatal(err)
		}
	}
	bind("bob-edit", "bob")
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := New(st)
	go a.Run(rctx)
	if err := a.WaitForSync(rctx); err != nil {
		b.Fatal(err)
	}
	at := Attributes{Verb: "create", APIGroup: "apps", Resource: "deployments", Namespace: "default"}
	for !a.Authorize("bob", []string{"dev"}, at).Allowed {
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	for b.Loop() {
		if !a.Authorize("bob", []string{"dev"}, at).Allowed {
			b.Fatal("denied")
		}
	}
}
