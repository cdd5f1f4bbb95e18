package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgeorch/edgeorch/messaging"
)

// env is an embedded server in operator mode with the authority's account.
type env struct {
	a   *Authority
	ns  *server.Server
	url string
	b   *messaging.Buckets
}

func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	a, err := Open(Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: dir, Port: -1, Auth: a.ServerAuth()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	a.SetPusher(func(j string) error { return messaging.UpdateAccount(ns, j) })
	e := &env{a: a, ns: ns, url: ns.ClientURL()}
	nc := e.connect(t, e.creds(t, "admin", RoleAdmin, ""))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if e.b, err = messaging.OpenBuckets(context.Background(), js, messaging.BucketOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) creds(t *testing.T, name string, role Role, node string) *Creds {
	t.Helper()
	raw, err := e.a.NewUserCreds(name, role, node, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCreds(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// errs collects the asynchronous errors of a connection (permission
// violations).
type errs struct {
	mu  sync.Mutex
	all []error
}

func (x *errs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.all = append(x.all, err)
}

func (x *errs) has(sub string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, err := range x.all {
		if strings.Contains(strings.ToLower(err.Error()), "permissions violation") && strings.Contains(err.Error(), sub) {
			return true
		}
	}
	return false
}

func (e *env) connect(t *testing.T, c *Creds, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(e.url, append(c.Options(), opts...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", c.Claims.Name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOpenPersistsAndWritesCreds(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.AccountPublicKey() != b.AccountPublicKey() {
		t.Fatalf("account key changed on reopen: %s, %s", a.AccountPublicKey(), b.AccountPublicKey())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		fi, err := ent.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", ent.Name(), fi.Mode().Perm())
		}
	}
	for file, role := range map[string]Role{AdminCredsFile: RoleAdmin, ReadonlyCredsFile: RoleReadonly} {
		c, err := ReadCreds(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if c.Role() != role || c.Claims.IssuerAccount != a.AccountPublicKey() {
			t.Errorf("%s: role %q issuer %s", file, c.Role(), c.Claims.IssuerAccount)
		}
	}
}

func TestUnauthenticatedRefused(t *testing.T) {
	e := start(t)
	_, err := nats.Connect(e.url, nats.MaxReconnects(0))
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("connect without creds: %v, want an authorization violation", err)
	}
	// A user of another authority is refused too.
	other, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := other.NewUserCreds("x", RoleAdmin, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCreds(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(e.url, append(c.Options(), nats.MaxReconnects(0))...); err == nil {
		t.Fatal("a user of another operator connected")
	}
}

func TestExpiredJoinerRefused(t *testing.T) {
	e := start(t)
	jt, _, err := e.a.NewJoinToken(-time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, err := jt.Creds()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(e.url, append(c.Options(), nats.MaxReconnects(0))...); err == nil {
		t.Fatal("an expired joiner connected")
	}
	// A valid joiner connects but may only publish on the join subject.
	jt, _, err = e.a.NewJoinToken(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJoinToken(jt.Encode())
	if err != nil || back != jt {
		t.Fatalf("token round trip: %v", err)
	}
	c, err = jt.Creds()
	if err != nil {
		t.Fatal(err)
	}
	var x errs
	nc := e.connect(t, c, nats.ErrorHandler(x.handler))
	if err := nc.Publish(messaging.APISubject(messaging.VerbGet), nil); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	eventually(t, "publish violation", func() bool { return x.has(messaging.APISubject(messaging.VerbGet)) })
}

func TestNodeConfinedToItsOwnKeys(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if _, err := e.b.Assignments.Put(ctx, messaging.AssignmentKey(n, "default", "p-"+n), []byte(`{"metadata":{"name":"p-`+n+`"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	var x errs
	nc := e.connect(t, e.creds(t, "a", RoleNode, "a"), nats.ErrorHandler(x.handler))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, messaging.BucketAssignments)
	if err != nil {
		t.Fatalf("node a opens the assignments bucket: %v", err)
	}
	// Its own assignments: watch and get work.
	w, err := kv.Watch(ctx, messaging.AssignmentFilter("a"))
	if err != nil {
		t.Fatalf("node a watches its assignments: %v", err)
	}
	select {
	case ent := <-w.Updates():
		if ent == nil || ent.Key() != messaging.AssignmentKey("a", "default", "p-a") {
			t.Fatalf("node a's watch gave %v", ent)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node a's watch gave nothing")
	}
	w.Stop()
	if _, err := kv.Get(ctx, messaging.AssignmentKey("a", "default", "p-a")); err != nil {
		t.Fatalf("node a gets its assignment: %v", err)
	}
	// Node b's: refused.
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if w, err := kv.Watch(sctx, messaging.AssignmentFilter("b")); err == nil {
		select {
		case ent := <-w.Updates():
			if ent != nil {
				t.Fatalf("node a watched node b's assignment %s", ent.Key())
			}
		case <-sctx.Done():
		}
		t.Fatal("node a could watch node b's assignments")
	}
	if _, err := kv.Get(sctx, messaging.AssignmentKey("b", "default", "p-b")); err == nil {
		t.Fatal("node a got node b's assignment")
	}
	if w, err := kv.Watch(sctx, ">"); err == nil {
		w.Stop()
		t.Fatal("node a could watch every assignment")
	}
	// Its own lease: put and get; node b's: refused (in the heartbeats
	// bucket and in the leases bucket older agents write to).
	for _, bucket := range []string{messaging.BucketHeartbeats, messaging.BucketLeases} {
		leases, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("%s: %v", bucket, err)
		}
		if _, err := leases.Put(ctx, messaging.LeaseKey("a"), []byte("{}")); err != nil {
			t.Fatalf("node a renews its lease in %s: %v", bucket, err)
		}
		if _, err := leases.Get(ctx, messaging.LeaseKey("a")); err != nil {
			t.Fatalf("node a reads its lease in %s: %v", bucket, err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := leases.Put(pctx, messaging.LeaseKey("b"), []byte("{}")); err == nil {
			t.Fatalf("node a wrote node b's lease in %s", bucket)
		}
		pcancel()
	}
	for _, kv := range []jetstream.KeyValue{e.b.Heartbeats, e.b.Leases} {
		if _, err := kv.Get(ctx, messaging.LeaseKey("b")); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("node b's lease in %s: %v, want none", kv.Bucket(), err)
		}
	}
	// Node b's subjects: no subscription, no API request as b.
	sub, err := nc.SubscribeSync(messaging.NodeSubject("b", messaging.NodeVerbLogs))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Publish(messaging.NodeAPISubject("b", messaging.VerbUpdateStatus), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(messaging.APISubject(messaging.VerbApply), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// Log output to a client's inbox is fine; a forged answer to a
	// client's own request (prefix.<mux>.<id>) is not.
	if err := nc.Publish("_INBOX.logs1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("_INBOX.mux1.1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	eventually(t, "violations", func() bool {
		return x.has("_INBOX.mux1.1") && !x.has("_INBOX.logs1") &&
			x.has(messaging.NodeSubject("b", messaging.NodeVerbLogs)) &&
			x.has(messaging.NodeAPISubject("b", messaging.VerbUpdateStatus)) &&
			x.has(messaging.APISubject(messaging.VerbApply))
	})
}

func TestReadonlyCannotApply(t *testing.T) {
	e := start(t)
	var x errs
	nc := e.connect(t, e.creds(t, "ro", RoleReadonly, ""), nats.ErrorHandler(x.handler))
	// Requests it may make reach a responder.
	admin := e.connect(t, e.creds(t, "admin", RoleAdmin, ""))
	sub, err := admin.Subscribe(messaging.APISubject(messaging.VerbGet), func(m *nats.Msg) { m.Respond([]byte("ok")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	admin.Flush()
	if m, err := nc.Request(messaging.APISubject(messaging.VerbGet), nil, 5*time.Second); err != nil || string(m.Data) != "ok" {
		t.Fatalf("readonly get: %v", err)
	}
	for _, verb := range []string{messaging.VerbApply, messaging.VerbDelete, messaging.VerbUpdate, messaging.VerbUpdateStatus, messaging.VerbTokenCreate, messaging.VerbNodeRevoke} {
		if err := nc.Publish(messaging.APISubject(verb), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(messaging.NodeSubject("a", messaging.NodeVerbExec), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	eventually(t, "violations", func() bool {
		for _, verb := range []string{messaging.VerbApply, messaging.VerbDelete, messaging.VerbUpdate, messaging.VerbUpdateStatus, messaging.VerbTokenCreate, messaging.VerbNodeRevoke} {
			if !x.has(messaging.APISubject(verb)) {
				return false
			}
		}
		return x.has(messaging.NodeSubject("a", messaging.NodeVerbExec))
	})
}

func TestRevokeCutsNodeOff(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	aRaw, err := e.a.NewUserCreds("a", RoleNode, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCreds(aRaw)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	nca := e.connect(t, ca, nats.ClosedHandler(func(*nats.Conn) { close(closed) }), nats.ReconnectWait(50*time.Millisecond))
	ncb := e.connect(t, e.creds(t, "b", RoleNode, "b"))
	if err := e.a.Revoke(ca.Claims.Subject); err != nil {
		t.Fatal(err)
	}
	if !e.a.IsRevoked(ca.Claims.Subject) {
		t.Fatal("not recorded as revoked")
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("revoked node's connection still %v", nca.Status())
	}
	if _, err := nats.Connect(e.url, append(ca.Options(), nats.MaxReconnects(0))...); err == nil {
		t.Fatal("revoked node connected again")
	}
	// Node b keeps working.
	js, err := jetstream.New(ncb)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, messaging.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, messaging.LeaseKey("b"), []byte("{}")); err != nil {
		t.Fatalf("node b after a's revocation: %v", err)
	}
	// The revocation survives a restart of the authority.
	again, err := Open(e.a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if !again.IsRevoked(ca.Claims.Subject) {
		t.Fatal("revocation lost on reopen")
	}
}

func TestExternalIssuesButCannotRevoke(t *testing.T) {
	e := start(t) // stands for someone else's operator
	dir := t.TempDir()
	seed, err := e.a.signing.Seed()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sign.nk"), seed, 0o600); err != nil {
		t.Fatal(err)
	}
	ext, err := OpenExternal(filepath.Join(dir, "sign.nk"), e.a.AdminCredsPath())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ext.NewUserCreds("n", RoleNode, "n", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCreds(raw)
	if err != nil {
		t.Fatal(err)
	}
	e.connect(t, c)
	if err := ext.Revoke(c.Claims.Subject); err == nil || !strings.Contains(err.Error(), "nsc") {
		t.Fatalf("external revoke: %v", err)
	}
	if _, err := OpenExternal(e.a.AdminCredsPath(), e.a.AdminCredsPath()); err == nil {
		t.Fatal("a creds file taken for a signing seed")
	}
}
