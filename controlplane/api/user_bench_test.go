package api

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

// benchUserEnv is an API server with authentication on, its admin client
// and an RBAC user "bench" bound to view in default, with 200 other
// RoleBindings around (what an authorization must not scan per request).
func benchUserEnv(b *testing.B) (admin, user *client.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	dir := b.TempDir()
	a, err := auth.Open(auth.Dir(dir))
	if err != nil {
		b.Fatal(err)
	}
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: dir, Port: -1, Auth: a.ServerAuth()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	connect := func(raw []byte) *nats.Conn {
		c, err := auth.ParseCreds(raw)
		if err != nil {
			b.Fatal(err)
		}
		nc, err := nats.Connect(ns.ClientURL(), c.Options()...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		return nc
	}
	raw, err := a.NewUserCreds("cp", auth.RoleAdmin, "", time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	nc := connect(raw)
	js, _ := jetstream.New(nc)
	bk, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{Memory: true})
	if err != nil {
		b.Fatal(err)
	}
	st := store.New(bk.Objects)
	srv := New(st, nc, Options{Auth: &AuthOptions{Authority: a, JoinTokens: bk.JoinTokens, NodeKeys: bk.NodeKeys}})
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Stop() })
	admin = client.New(nc)
	for i := range 200 {
		rb := roleBinding("default", "other-"+string(rune('a'+i%26))+string(rune('a'+i/26)), "ClusterRole", "edit", userSubject("someone"))
		if _, _, err := admin.Apply(ctx, rb); err != nil {
			b.Fatal(err)
		}
	}
	if _, _, err := admin.Apply(ctx, rbacCM("default", "c")); err != nil {
		b.Fatal(err)
	}
	if _, _, err := admin.Apply(ctx, roleBinding("default", "bench-view", "ClusterRole", "view", userSubject("bench"))); err != nil {
		b.Fatal(err)
	}
	res, err := admin.CreateUser(ctx, "bench", nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	user = client.New(connect([]byte(res.Creds)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := user.Get(ctx, "configmaps", "default", "c"); err == nil {
			break
		} else if time.Now().After(deadline) {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return admin, user
}

// BenchmarkGetAsRBACUser and BenchmarkGetAsAdmin compare one get through
// RBAC with one without.
func BenchmarkGetAsRBACUser(b *testing.B) {
	_, user := benchUserEnv(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := user.Get(ctx, "configmaps", "default", "c"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetAsAdmin(b *testing.B) {
	admin, _ := benchUserEnv(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := admin.Get(ctx, "configmaps", "default", "c"); err != nil {
			b.Fatal(err)
		}
	}
}
