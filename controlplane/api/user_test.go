package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

// rbacUser issues creds for name through the admin API and connects with
// them; errs receives the connection's asynchronous errors.
func (e *authEnv) rbacUser(t *testing.T, name string, groups ...string) (*client.Client, *nats.Conn, chan error) {
	t.Helper()
	res, err := e.admin.CreateUser(ctxT(t), name, groups, 0)
	if err != nil {
		t.Fatalf("user create %s: %v", name, err)
	}
	c, err := auth.ParseCreds([]byte(res.Creds))
	if err != nil {
		t.Fatal(err)
	}
	if c.UserName() != name || c.Role() != auth.RoleUser {
		t.Fatalf("creds of %s: user %q role %q", name, c.UserName(), c.Role())
	}
	errs := make(chan error, 16)
	nc, err := nats.Connect(e.url, append(c.Options(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))...)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	cl := client.New(nc)
	if cl.User() != name {
		t.Fatalf("client of %s acts as user %q", name, cl.User())
	}
	return cl, nc, errs
}

// applyAdmin applies objs as admin.
func (e *authEnv) applyAdmin(t *testing.T, objs ...manifests.Object) {
	t.Helper()
	for _, o := range objs {
		if _, _, err := e.admin.Apply(ctxT(t), o); err != nil {
			t.Fatalf("apply %T %s: %v", o, o.GetObjectMeta().Name, err)
		}
	}
}

func rbacNS(name string) *manifests.Namespace {
	ns := &manifests.Namespace{}
	ns.Name = name
	return ns
}

func rbacCM(ns, name string) *manifests.ConfigMap {
	c := &manifests.ConfigMap{Data: map[string]string{"k": "v"}}
	c.Name, c.Namespace = name, ns
	return c
}

func roleBinding(ns, name, kind, role string, subjects ...manifests.Subject) *manifests.RoleBinding {
	rb := &manifests.RoleBinding{Subjects: subjects, RoleRef: manifests.RoleRef{APIGroup: manifests.RBACGroup, Kind: kind, Name: role}}
	rb.Name, rb.Namespace = name, ns
	return rb
}

func userSubject(name string) manifests.Subject {
	return manifests.Subject{Kind: manifests.SubjectKindUser, APIGroup: manifests.RBACGroup, Name: name}
}

func role(ns, name string, rules ...manifests.PolicyRule) *manifests.Role {
	r := &manifests.Role{Rules: rules}
	r.Name, r.Namespace = name, ns
	return r
}

// eventually retries f until it returns nil or the deadline passes: RBAC
// objects reach the API's caches through a watch.
func rbacEventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantRBACDenied(t *testing.T, err error, msg string) {
	t.Helper()
	if client.CodeOf(err) != client.CodeForbidden || !strings.Contains(err.Error(), msg) {
		t.Fatalf("got %v, want Forbidden %q", err, msg)
	}
}

func TestRBACViewUserReadsButCannotWrite(t *testing.T) {
	e := newAuthEnv(t)
	e.applyAdmin(t, rbacCM("default", "settings"), roleBinding("default", "viewer-view", "ClusterRole", "view", userSubject("viewer")))
	u, _, _ := e.rbacUser(t, "viewer")
	ctx := ctxT(t)
	rbacEventually(t, "viewer gets a configmap", func() error {
		_, err := u.Get(ctx, "configmaps", "default", "settings")
		return err
	})
	if _, _, err := u.List(ctx, "pods", "default", ""); err != nil {
		t.Fatalf("viewer lists pods: %v", err)
	}
	// A write is denied with kubectl's message.
	_, _, err := u.Apply(ctx, rbacCM("default", "new"))
	wantRBACDenied(t, err, `configmaps is forbidden: User "viewer" cannot create resource "configmaps" in API group "" in the namespace "default"`)
	d := &manifests.Deployment{}
	d.Name, d.Namespace = "web", "default"
	d.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	d.Spec.Template.Labels = map[string]string{"app": "web"}
	d.Spec.Template.Spec.Containers = []manifests.Container{{Name: "web", Image: "nginx"}}
	_, _, err = u.Apply(ctx, d)
	wantRBACDenied(t, err, `forbidden: User "viewer" cannot create resource "deployments" in API group "apps" in the namespace "default"`)
	_, err = u.Delete(ctx, "configmaps", "default", "settings")
	wantRBACDenied(t, err, `configmaps "settings" is forbidden: User "viewer" cannot delete resource "configmaps" in API group "" in the namespace "default"`)
	// view does not read secrets, nor other namespaces, nor all of them.
	_, err = u.Get(ctx, "secrets", "default", "x")
	wantRBACDenied(t, err, `secrets "x" is forbidden: User "viewer" cannot get resource "secrets"`)
	_, _, err = u.List(ctx, "pods", "", "")
	wantRBACDenied(t, err, `pods is forbidden: User "viewer" cannot list resource "pods" in API group "" at the cluster scope`)
	// Nothing was written.
	if _, err := e.st.Get(ctx, "configmaps", "default", "new"); client.CodeOf(err) != client.CodeNotFound {
		t.Fatalf("denied configmap stored: %v", err)
	}
	// Verbs not served to users are refused by the client, by name.
	if _, err := u.CreateJoinToken(ctx, time.Minute, ""); client.CodeOf(err) != client.CodeForbidden {
		t.Fatalf("user creates a join token: %v", err)
	}
}

func TestRBACRoleInOneNamespace(t *testing.T) {
	e := newAuthEnv(t)
	e.applyAdmin(t, rbacNS("team-a"), rbacNS("team-b"),
		role("team-a", "cm-writer", manifests.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update"}}),
		roleBinding("team-a", "alice-cm", "Role", "cm-writer", userSubject("alice")))
	u, _, _ := e.rbacUser(t, "alice")
	ctx := ctxT(t)
	rbacEventually(t, "alice creates in team-a", func() error {
		_, _, err := u.Apply(ctx, rbacCM("team-a", "one"))
		return err
	})
	// apply of an existing object is an update, which the Role allows.
	if _, _, err := u.Apply(ctx, rbacCM("team-a", "one")); err != nil {
		t.Fatalf("alice re-applies in team-a: %v", err)
	}
	_, _, err := u.Apply(ctx, rbacCM("team-b", "one"))
	wantRBACDenied(t, err, `configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "team-b"`)
	_, err = u.Delete(ctx, "configmaps", "team-a", "one")
	wantRBACDenied(t, err, `cannot delete resource "configmaps"`)
	// Another user has nothing.
	bob, _, _ := e.rbacUser(t, "bob")
	_, err = bob.Get(ctx, "configmaps", "team-a", "one")
	wantRBACDenied(t, err, `configmaps "one" is forbidden: User "bob" cannot get resource "configmaps" in API group "" in the namespace "team-a"`)
}

func TestRBACClusterRoleBindingAndGroups(t *testing.T) {
	e := newAuthEnv(t)
	crb := &manifests.ClusterRoleBinding{
		Subjects: []manifests.Subject{{Kind: manifests.SubjectKindGroup, APIGroup: manifests.RBACGroup, Name: "ops"}},
		RoleRef:  manifests.RoleRef{APIGroup: manifests.RBACGroup, Kind: "ClusterRole", Name: "edit"},
	}
	crb.Name = "ops-edit"
	e.applyAdmin(t, rbacNS("far"), crb)
	ops, _, _ := e.rbacUser(t, "carol", "ops")
	ctx := ctxT(t)
	rbacEventually(t, "ops member creates in default", func() error {
		_, _, err := ops.Apply(ctx, rbacCM("default", "c1"))
		return err
	})
	if _, _, err := ops.Apply(ctx, rbacCM("far", "c2")); err != nil {
		t.Fatalf("ops member creates in far: %v", err)
	}
	if _, _, err := ops.List(ctx, "configmaps", "", ""); err != nil {
		t.Fatalf("ops member lists across namespaces: %v", err)
	}
	// edit grants no RBAC objects, and no cluster-scoped kinds.
	_, _, err := ops.Apply(ctx, rbacNS("mine"))
	wantRBACDenied(t, err, `namespaces is forbidden: User "carol" cannot create resource "namespaces" in API group "" at the cluster scope`)
	// Groups come from the record the control plane kept, not from the
	// request: the same name without the group has nothing.
	dave, _, _ := e.rbacUser(t, "dave")
	_, _, err = dave.Apply(ctx, rbacCM("default", "d1"))
	wantRBACDenied(t, err, `User "dave" cannot create resource "configmaps"`)

	// whoami and can-i.
	who, err := ops.WhoAmI(ctx)
	if err != nil || who.User != "carol" || !strings.Contains(strings.Join(who.Groups, ","), "ops") {
		t.Fatalf("whoami: %+v %v", who, err)
	}
	for _, c := range []struct {
		cl   *client.Client
		req  client.AccessReviewRequest
		want bool
	}{
		{ops, client.AccessReviewRequest{Verb: "create", Resource: "deployments", Namespace: "far"}, true},
		{ops, client.AccessReviewRequest{Verb: "delete", Resource: "secrets", Namespace: "default"}, true},
		{ops, client.AccessReviewRequest{Verb: "create", Resource: "rolebindings", Namespace: "default"}, false},
		{ops, client.AccessReviewRequest{Verb: "get", Resource: "pods/log", Namespace: "default"}, true},
		{dave, client.AccessReviewRequest{Verb: "get", Resource: "pods", Namespace: "default"}, false},
		{e.admin, client.AccessReviewRequest{Verb: "delete", Resource: "nodes"}, true},
		{e.admin, client.AccessReviewRequest{User: "carol", Verb: "create", Resource: "deployments", Namespace: "far"}, true},
		{e.admin, client.AccessReviewRequest{User: "carol", Verb: "create", Resource: "namespaces"}, false},
	} {
		res, err := c.cl.AccessReview(ctx, c.req)
		if err != nil || res.Allowed != c.want {
			t.Errorf("can-i %+v: %+v %v, want %v", c.req, res, err, c.want)
		}
	}
	// A user may not ask for another.
	_, err = dave.AccessReview(ctx, client.AccessReviewRequest{User: "carol", Verb: "get", Resource: "pods"})
	wantRBACDenied(t, err, "--as needs admin credentials")
	res, err := ops.AccessReview(ctx, client.AccessReviewRequest{List: true, Namespace: "default"})
	if err != nil || !strings.Contains(strings.Join(res.Rules, "\n"), "deployments.apps") {
		t.Fatalf("can-i --list: %+v %v", res, err)
	}
}

func TestRBACResourceNamesAndEscalation(t *testing.T) {
	e := newAuthEnv(t)
	e.applyAdmin(t, rbacCM("default", "allowed"), rbacCM("default", "other"),
		role("default", "one-cm", manifests.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"allowed"}, Verbs: []string{"get", "update"}}),
		roleBinding("default", "erin-one", "Role", "one-cm", userSubject("erin")),
		rbacNS("team"), roleBinding("team", "erin-admin", "ClusterRole", "admin", userSubject("erin")))
	u, _, _ := e.rbacUser(t, "erin")
	ctx := ctxT(t)
	rbacEventually(t, "erin gets the named configmap", func() error {
		_, err := u.Get(ctx, "configmaps", "default", "allowed")
		return err
	})
	_, err := u.Get(ctx, "configmaps", "default", "other")
	wantRBACDenied(t, err, `configmaps "other" is forbidden: User "erin" cannot get resource "configmaps"`)
	_, _, err = u.List(ctx, "configmaps", "default", "")
	wantRBACDenied(t, err, `cannot list resource "configmaps"`)

	// A namespace admin may bind what it holds, not more.
	rbacEventually(t, "erin binds view in team", func() error {
		_, _, err := u.Apply(ctx, roleBinding("team", "frank-view", "ClusterRole", "view", userSubject("frank")))
		return err
	})
	_, _, err = u.Apply(ctx, roleBinding("team", "erin-root", "ClusterRole", "cluster-admin", userSubject("erin")))
	wantRBACDenied(t, err, `User "erin" is attempting to grant RBAC permissions not currently held`)
	_, _, err = u.Apply(ctx, role("team", "nodes", manifests.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}))
	if err != nil {
		// A Role in team granting get nodes: erin lacks it (admin has no nodes).
		wantRBACDenied(t, err, `attempting to grant RBAC permissions not currently held: {APIGroups:[""], Resources:["nodes"], Verbs:["get"]}`)
	} else {
		t.Fatal("erin created a Role granting what she lacks")
	}
}

func TestRBACUserConfinedByNATS(t *testing.T) {
	e := newAuthEnv(t)
	_, nc, errs := e.rbacUser(t, "mallory")
	e.rbacUser(t, "victim")
	for _, subj := range []string{
		auth.UserAPISubject("victim", messaging.VerbGet),
		messaging.APISubject(messaging.VerbApply),
		messaging.APISubject(client.VerbUserCreate),
		messaging.NodeAPISubject("n1", messaging.VerbGet),
		messaging.WatchSubject("pods", "default", "x"),
	} {
		if err := nc.Publish(subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation for Publish") || !strings.Contains(err.Error(), subj) {
				t.Fatalf("publish to %s: %v", subj, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("publish to %s: no permissions violation", subj)
		}
	}
	// Nor subscribe to another's inbox, or to the watch tree.
	for _, subj := range []string{auth.UserInboxPrefix("victim") + ".>", messaging.WatchAllFilter} {
		if _, err := nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation for Subscription") {
				t.Fatalf("subscribe to %s: %v", subj, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("subscribe to %s: no permissions violation", subj)
		}
	}
}

func TestRBACUserRevoke(t *testing.T) {
	e := newAuthEnv(t)
	e.applyAdmin(t, roleBinding("default", "gus-view", "ClusterRole", "view", userSubject("gus")))
	u, nc, _ := e.rbacUser(t, "gus")
	ctx := ctxT(t)
	rbacEventually(t, "gus lists", func() error {
		_, _, err := u.List(ctx, "pods", "default", "")
		return err
	})
	res, err := e.admin.RevokeUser(ctx, "gus")
	if err != nil || len(res.Keys) != 1 {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	rbacEventually(t, "gus cut off", func() error {
		if nc.IsConnected() {
			return context.DeadlineExceeded
		}
		return nil
	})
	if _, err := e.admin.RevokeUser(ctx, "nobody"); client.CodeOf(err) != client.CodeNotFound {
		t.Fatalf("revoke unknown user: %v", err)
	}
	if _, err := e.admin.CreateUser(ctx, "Bad_Name", nil, 0); client.CodeOf(err) != client.CodeInvalid {
		t.Fatalf("bad user name: %v", err)
	}
	if _, err := e.admin.CreateUser(ctx, "ok", []string{"system:masters"}, 0); client.CodeOf(err) != client.CodeInvalid {
		t.Fatalf("reserved group: %v", err)
	}
}

// A user who may create but not update: apply creates, never updates,
// also when the object appears between the check and the write.
func TestRBACCreateOnlyApply(t *testing.T) {
	e := newAuthEnv(t)
	e.applyAdmin(t,
		role("default", "cm-create", manifests.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}}),
		roleBinding("default", "hal-create", "Role", "cm-create", userSubject("hal")))
	u, _, _ := e.rbacUser(t, "hal")
	ctx := ctxT(t)
	rbacEventually(t, "hal creates", func() error {
		_, _, err := u.Apply(ctx, rbacCM("default", "once"))
		return err
	})
	_, _, err := u.Apply(ctx, rbacCM("default", "once"))
	wantRBACDenied(t, err, `configmaps "once" is forbidden: User "hal" cannot update resource "configmaps"`)

	// The race itself: the create-only path on an object that exists.
	s := newEnv(t, Options{})
	raw, _ := json.Marshal(client.ApplyRequest{Object: mustJSON(t, rbacCM("default", "raced"))})
	if _, err := s.srv.applyCreateOnly(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if _, err := s.srv.applyCreateOnly(ctx, raw); client.CodeOf(err) != client.CodeExists {
		t.Fatalf("create-only apply of an existing object: %v, want AlreadyExists", err)
	}
}

func mustJSON(t *testing.T, obj manifests.Object) json.RawMessage {
	t.Helper()
	if err := manifests.SetKind(obj); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
