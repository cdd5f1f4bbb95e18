package api

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

// authEnv is an API server on an embedded server in operator mode.
type authEnv struct {
	a     *auth.Authority
	url   string
	st    *store.Store
	b     *messaging.Buckets
	srv   *Server
	admin *client.Client
}

func newAuthEnv(t testing.TB) *authEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	a, err := auth.Open(auth.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: dir, Port: -1, Auth: a.ServerAuth()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	a.SetPusher(func(j string) error { return messaging.UpdateAccount(ns, j) })
	e := &authEnv{a: a, url: ns.ClientURL()}
	nc := e.connect(t, "controlplane", auth.RoleAdmin, "")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if e.b, err = messaging.OpenBuckets(ctx, js, messaging.BucketOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	e.st = store.New(e.b.Objects)
	e.srv = New(e.st, nc, Options{Auth: &AuthOptions{Authority: a, JoinTokens: e.b.JoinTokens, NodeKeys: e.b.NodeKeys}})
	if err := e.srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Stop() })
	e.admin = client.New(nc)
	return e
}

func (e *authEnv) connect(t testing.TB, name string, role auth.Role, node string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	raw, err := e.a.NewUserCreds(name, role, node, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := auth.ParseCreds(raw)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.url, append(c.Options(), opts...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func (e *authEnv) create(t *testing.T, objs ...manifests.Object) {
	t.Helper()
	for _, o := range objs {
		manifests.Default(o)
		if _, err := e.st.Create(ctxT(t), o); err != nil {
			t.Fatal(err)
		}
	}
}

func azBoundPod(name, node string, uses func(*manifests.PodSpec)) *manifests.Pod {
	p := pod(name, "img")
	p.Namespace = "default"
	p.Spec.NodeName = node
	if uses != nil {
		uses(&p.Spec)
	}
	return p
}

func azSecret(name string) *manifests.Secret {
	s := &manifests.Secret{Data: map[string][]byte{"k": []byte("v-" + name)}}
	s.Name, s.Namespace = name, "default"
	return s
}

func azConfigMap(name string) *manifests.ConfigMap {
	c := &manifests.ConfigMap{Data: map[string]string{"k": "v"}}
	c.Name, c.Namespace = name, "default"
	return c
}

func azNode(name string) *manifests.Node {
	n := &manifests.Node{}
	n.Name = name
	return n
}

func wantForbidden(t *testing.T, what string, err error, contains ...string) {
	t.Helper()
	if client.CodeOf(err) != client.CodeForbidden {
		t.Fatalf("%s: %v (code %q), want Forbidden", what, err, client.CodeOf(err))
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("%s: %q does not name %q", what, err.Error(), c)
		}
	}
}

func TestNodeAuthorization(t *testing.T) {
	e := newAuthEnv(t)
	e.create(t, azNode("a"), azNode("b"),
		azSecret("s-a"), azSecret("s-env"), azSecret("s-pull"), azSecret("s-b"), azSecret("s-unused"), azConfigMap("cm-a"), azConfigMap("cm-b"),
		azBoundPod("p-a", "a", func(s *manifests.PodSpec) {
			s.Volumes = []manifests.Volume{{Name: "v", VolumeSource: manifests.VolumeSource{Secret: &manifests.SecretVolumeSource{SecretName: "s-a"}}}}
			s.Containers[0].Env = []manifests.EnvVar{{Name: "X", ValueFrom: &manifests.EnvVarSource{SecretKeyRef: &manifests.KeySelector{Name: "s-env", Key: "k"}}}}
			s.Containers[0].EnvFrom = []manifests.EnvFromSource{{ConfigMapRef: &manifests.OptionalNameRef{Name: "cm-a"}}}
			s.ImagePullSecrets = []manifests.LocalObjectRef{{Name: "s-pull"}}
		}),
		azBoundPod("p-b", "b", func(s *manifests.PodSpec) {
			s.Volumes = []manifests.Volume{{Name: "v", VolumeSource: manifests.VolumeSource{Secret: &manifests.SecretVolumeSource{SecretName: "s-b"}}}}
		}),
	)
	ctx := ctxT(t)
	a := client.New(e.connect(t, "a", auth.RoleNode, "a"), client.AsNode("a"))

	// Secrets and configmaps its pods use; not the others.
	for _, name := range []string{"s-a", "s-env", "s-pull"} {
		obj, err := a.Get(ctx, "secrets", "default", name)
		if err != nil {
			t.Fatalf("node a gets secret %s its pod uses: %v", name, err)
		}
		if got := string(obj.(*manifests.Secret).Data["k"]); got != "v-"+name {
			t.Fatalf("secret %s: %q", name, got)
		}
	}
	if _, err := a.Get(ctx, "configmaps", "default", "cm-a"); err != nil {
		t.Fatalf("node a gets configmap cm-a: %v", err)
	}
	_, err := a.Get(ctx, "secrets", "default", "s-b")
	wantForbidden(t, "node a gets node b's secret", err, `node "a"`, "get", `secrets "default/s-b"`)
	_, err = a.Get(ctx, "secrets", "default", "s-unused")
	wantForbidden(t, "node a gets an unused secret", err)
	_, err = a.Get(ctx, "configmaps", "default", "cm-b")
	wantForbidden(t, "node a gets an unused configmap", err)
	_, _, err = a.List(ctx, "secrets", "", "")
	wantForbidden(t, "node a lists secrets", err, "list")

	// Pods: its own, not b's.
	obj, err := a.Get(ctx, "pods", "default", "p-a")
	if err != nil {
		t.Fatalf("node a gets its pod: %v", err)
	}
	pa := obj.(*manifests.Pod)
	pa.Status.Phase = "Running"
	if _, err := a.UpdateStatus(ctx, pa); err != nil {
		t.Fatalf("node a updates its pod's status: %v", err)
	}
	_, err = a.Get(ctx, "pods", "default", "p-b")
	wantForbidden(t, "node a gets node b's pod", err, `pods "default/p-b"`)
	obj, err = e.admin.Get(ctx, "pods", "default", "p-b")
	if err != nil {
		t.Fatal(err)
	}
	pb := obj.(*manifests.Pod)
	pb.Status.Phase = "Failed"
	_, err = a.UpdateStatus(ctx, pb)
	wantForbidden(t, "node a updates node b's pod status", err, "status", `pods "default/p-b"`)
	_, err = a.Update(ctx, pa)
	wantForbidden(t, "node a updates a pod spec", err)
	_, _, err = a.List(ctx, "pods", "", "")
	wantForbidden(t, "node a lists pods", err)
	_, err = a.Delete(ctx, "pods", "default", "p-a")
	wantForbidden(t, "node a deletes its pod", err, "delete")

	// Its own Node, not b's.
	obj, err = a.Get(ctx, "nodes", "", "a")
	if err != nil {
		t.Fatal(err)
	}
	na := obj.(*manifests.Node)
	na.Labels = map[string]string{"x": "y"}
	if _, err := a.Update(ctx, na); err != nil {
		t.Fatalf("node a updates its node: %v", err)
	}
	obj, err = a.Get(ctx, "nodes", "", "b")
	if err != nil {
		t.Fatalf("node a reads node b (the pod network needs it): %v", err)
	}
	nb := obj.(*manifests.Node)
	nb.Labels = map[string]string{"x": "y"}
	_, err = a.Update(ctx, nb)
	wantForbidden(t, "node a updates node b", err, `nodes "b"`)
	_, err = a.UpdateStatus(ctx, nb)
	wantForbidden(t, "node a updates node b's status", err)
	_, _, err = a.Apply(ctx, azNode("c"))
	wantForbidden(t, "node a creates node c", err)
	if _, _, err := a.List(ctx, "services", "", ""); err != nil {
		t.Fatalf("node a lists services: %v", err)
	}

	// Events about itself or its pods only.
	ev := func(name, kind, about string) *manifests.Event {
		x := &manifests.Event{InvolvedObject: manifests.ObjectReference{Kind: kind, Name: about, Namespace: "default"}, Reason: "Test", Type: manifests.EventNormal}
		x.Name, x.Namespace = name, "default"
		return x
	}
	if _, _, err := a.Apply(ctx, ev("e1", "Pod", "p-a")); err != nil {
		t.Fatalf("node a creates an event about its pod: %v", err)
	}
	if _, _, err := a.Apply(ctx, ev("e2", "Node", "a")); err != nil {
		t.Fatalf("node a creates an event about itself: %v", err)
	}
	_, _, err = a.Apply(ctx, ev("e3", "Pod", "p-b"))
	wantForbidden(t, "node a creates an event about b's pod", err)

	// Posing as b, or using the operators' subjects: refused by NATS.
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	asB := client.New(a.Conn(), client.AsNode("b"))
	_, err = asB.Get(sctx, "secrets", "default", "s-b")
	wantForbidden(t, "node a posing as b", err, messaging.NodeAPISubject("b", messaging.VerbGet))
	sctx2, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	_, err = client.New(a.Conn()).Get(sctx2, "secrets", "default", "s-b")
	wantForbidden(t, "node a on the operators' get", err, messaging.APISubject(messaging.VerbGet))
}

func TestReadonlyUser(t *testing.T) {
	e := newAuthEnv(t)
	e.create(t, azConfigMap("cm"))
	ctx := ctxT(t)
	ro := client.New(e.connect(t, "ro", auth.RoleReadonly, ""))
	if _, err := ro.Get(ctx, "configmaps", "default", "cm"); err != nil {
		t.Fatalf("readonly get: %v", err)
	}
	if _, _, err := ro.List(ctx, "configmaps", "", ""); err != nil {
		t.Fatalf("readonly list: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, _, err := ro.Apply(sctx, azConfigMap("new"))
	wantForbidden(t, "readonly apply", err, messaging.APISubject(messaging.VerbApply))
	if _, err := e.st.Get(ctx, "configmaps", "default", "new"); !client.IsNotFound(err) {
		t.Fatalf("readonly apply stored something: %v", err)
	}
	sctx2, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	_, err = ro.CreateJoinToken(sctx2, time.Hour, "")
	wantForbidden(t, "readonly token create", err)
}

// joiner connects with the joiner creds a token string carries.
func (e *authEnv) joiner(t *testing.T, token string) *client.Client {
	t.Helper()
	jt, err := auth.ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	c, err := jt.Creds()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.url, c.Options()...)
	if err != nil {
		t.Fatalf("connect as joiner: %v", err)
	}
	t.Cleanup(nc.Close)
	return client.New(nc)
}

func joinRequest(t *testing.T, token, node string) (client.JoinRequest, nkeys.KeyPair) {
	t.Helper()
	jt, err := auth.ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return client.JoinRequest{TokenID: jt.ID, Secret: jt.Secret, Node: node, PublicKey: pub}, kp
}

func (e *authEnv) connectJWT(t *testing.T, token string, kp nkeys.KeyPair, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	seed, _ := kp.Seed()
	raw, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	c, err := auth.ParseCreds(raw)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.url, append(c.Options(), opts...)...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

func TestJoinToken(t *testing.T) {
	e := newAuthEnv(t)
	ctx := ctxT(t)
	if _, err := e.admin.CreateJoinToken(ctx, -time.Hour, ""); client.CodeOf(err) != client.CodeInvalid {
		t.Fatalf("negative ttl: %v", err)
	}
	res, err := e.admin.CreateJoinToken(ctx, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	// Only the hash of the secret is stored.
	jt, _ := auth.ParseJoinToken(res.Token)
	ent, err := e.b.JoinTokens.Get(ctx, messaging.TokenKey(res.ID))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ent.Value()), jt.Secret) || !strings.Contains(string(ent.Value()), auth.HashSecret(jt.Secret)) {
		t.Fatalf("stored token %s", ent.Value())
	}
	j := e.joiner(t, res.Token)
	bad, _ := joinRequest(t, res.Token, "n1")
	bad.Secret = "wrong"
	_, err = j.Join(ctx, bad)
	wantForbidden(t, "wrong secret", err, "wrong secret")

	// Two joins at once with one token: exactly one wins.
	var wg sync.WaitGroup
	type out struct {
		jwt string
		kp  nkeys.KeyPair
		err error
	}
	outs := make([]out, 2)
	for i := range outs {
		req, kp := joinRequest(t, res.Token, "n1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			token, err := j.Join(ctx, req)
			outs[i] = out{token, kp, err}
		}()
	}
	wg.Wait()
	var won *out
	for i := range outs {
		if outs[i].err == nil {
			if won != nil {
				t.Fatal("two joins won with one token")
			}
			won = &outs[i]
		} else {
			wantForbidden(t, "second join", outs[i].err, "already used")
		}
	}
	if won == nil {
		t.Fatalf("no join won: %v, %v", outs[0].err, outs[1].err)
	}
	// The used token is refused.
	again, _ := joinRequest(t, res.Token, "n2")
	_, err = j.Join(ctx, again)
	wantForbidden(t, "used token", err, "already used", `"n1"`)

	// The node JWT works, as node n1.
	nc, err := e.connectJWT(t, won.jwt, won.kp)
	if err != nil {
		t.Fatalf("connect as the joined node: %v", err)
	}
	n1 := client.New(nc, client.AsNode("n1"))
	if _, _, err := n1.Apply(ctx, azNode("n1")); err != nil {
		t.Fatalf("joined node registers: %v", err)
	}

	// An expired token is refused by the control plane (its record says so)
	// even if the device's joiner creds still connect.
	res2, err := e.admin.CreateJoinToken(ctx, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	ent, err = e.b.JoinTokens.Get(ctx, messaging.TokenKey(res2.ID))
	if err != nil {
		t.Fatal(err)
	}
	var rec tokenRecord
	json.Unmarshal(ent.Value(), &rec)
	rec.Expires = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	raw, _ := json.Marshal(rec)
	if _, err := e.b.JoinTokens.Put(ctx, messaging.TokenKey(res2.ID), raw); err != nil {
		t.Fatal(err)
	}
	req2, _ := joinRequest(t, res2.Token, "n3")
	_, err = e.joiner(t, res2.Token).Join(ctx, req2)
	wantForbidden(t, "expired token", err, "expired")

	// A token bound to a node joins only as that node.
	res3, err := e.admin.CreateJoinToken(ctx, time.Hour, "n4")
	if err != nil {
		t.Fatal(err)
	}
	req3, _ := joinRequest(t, res3.Token, "n5")
	_, err = e.joiner(t, res3.Token).Join(ctx, req3)
	wantForbidden(t, "token for another node", err, `"n4"`)
}

func TestRevokeNode(t *testing.T) {
	e := newAuthEnv(t)
	ctx := ctxT(t)
	join := func(name string) (string, nkeys.KeyPair) {
		res, err := e.admin.CreateJoinToken(ctx, time.Hour, name)
		if err != nil {
			t.Fatal(err)
		}
		req, kp := joinRequest(t, res.Token, name)
		token, err := e.joiner(t, res.Token).Join(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return token, kp
	}
	ja, kpa := join("a")
	jb, kpb := join("b")
	closed := make(chan struct{})
	nca, err := e.connectJWT(t, ja, kpa, nats.ClosedHandler(func(*nats.Conn) { close(closed) }), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ncb, err := e.connectJWT(t, jb, kpb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RevokeNode(ctx, "nobody"); !client.IsNotFound(err) {
		t.Fatalf("revoke unknown node: %v", err)
	}
	res, err := e.admin.RevokeNode(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := kpa.PublicKey()
	if len(res.Keys) != 1 || res.Keys[0] != pa {
		t.Fatalf("revoked %v, want [%s]", res.Keys, pa)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("revoked node still %v", nca.Status())
	}
	if _, err := e.connectJWT(t, ja, kpa, nats.MaxReconnects(0)); err == nil {
		t.Fatal("revoked node connected again")
	}
	// Node b keeps working.
	if _, _, err := client.New(ncb, client.AsNode("b")).Apply(ctx, azNode("b")); err != nil {
		t.Fatalf("node b after a's revocation: %v", err)
	}
	// Re-joining with a new token gives a working identity again.
	ja2, kpa2 := join("a")
	if _, err := e.connectJWT(t, ja2, kpa2); err != nil {
		t.Fatalf("re-joined node: %v", err)
	}
}

func TestNodeStatusOfGonePod(t *testing.T) {
	e := newAuthEnv(t)
	e.create(t, azBoundPod("p", "a", nil))
	ctx := ctxT(t)
	a := client.New(e.connect(t, "a", auth.RoleNode, "a"), client.AsNode("a"))
	obj, err := a.Get(ctx, "pods", "default", "p")
	if err != nil {
		t.Fatal(err)
	}
	old := obj.(*manifests.Pod)
	// Deleted: NotFound (the agent drops the status), not Forbidden
	// (which it would retry forever).
	if _, err := e.admin.Delete(ctx, "pods", "default", "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateStatus(ctx, old); !client.IsNotFound(err) {
		t.Fatalf("status of a deleted pod: %v, want NotFound", err)
	}
	// Recreated with the same name on node b: still NotFound for a's
	// old pod, Forbidden without a UID.
	e.create(t, azBoundPod("p", "b", nil))
	if _, err := a.UpdateStatus(ctx, old); !client.IsNotFound(err) {
		t.Fatalf("status of a replaced pod: %v, want NotFound", err)
	}
	old.UID = ""
	_, err = a.UpdateStatus(ctx, old)
	wantForbidden(t, "status of b's pod", err, "not bound")
}
