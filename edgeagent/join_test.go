package edgeagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

// securePlane is an API server on an embedded server with authentication.
func securePlane(t *testing.T) (url string, admin *client.Client) {
	t.Helper()
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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	opts, err := auth.CredsOptions(a.AdminCredsPath())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(store.New(b.Objects), nc, api.Options{Auth: &api.AuthOptions{Authority: a, JoinTokens: b.JoinTokens, NodeKeys: b.NodeKeys}})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	return ns.ClientURL(), client.New(nc)
}

func TestCredentialsJoinOnceThenOffline(t *testing.T) {
	url, admin := securePlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()

	// No creds, no token: none (a --dev control plane).
	opts, path, err := Credentials(ctx, CredsConfig{Server: url, NodeName: "n1", DataDir: dir})
	if err != nil || opts != nil || path != "" {
		t.Fatalf("no creds: %v %v %q", opts, err, path)
	}

	res, err := admin.CreateJoinToken(ctx, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := CredsConfig{Server: url, NodeName: "n1", DataDir: dir, JoinToken: res.Token}
	opts, path, err = Credentials(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, NodeCredsFile) {
		t.Fatalf("creds path %q", path)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.creds: %v %v, want 0600", fi, err)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect with the joined creds: %v", err)
	}
	defer nc.Close()
	if _, _, err := client.New(nc, client.AsNode("n1")).List(ctx, "nodes", "", ""); err != nil {
		t.Fatalf("joined node lists nodes: %v", err)
	}

	// A restart reads node.creds with no network (the token, used, is
	// not needed again).
	cfg.Server = "nats://127.0.0.1:1"
	if _, path2, err := Credentials(ctx, cfg); err != nil || path2 != path {
		t.Fatalf("offline restart: %q %v", path2, err)
	}
	// The creds are n1's: another node name is refused.
	cfg.NodeName = "n2"
	if _, _, err := Credentials(ctx, cfg); err == nil || !strings.Contains(err.Error(), `not to node "n2"`) {
		t.Fatalf("creds of n1 for n2: %v", err)
	}
	// The used token cannot join again elsewhere.
	other := CredsConfig{Server: url, NodeName: "n3", DataDir: t.TempDir(), JoinToken: res.Token}
	if _, _, err := Credentials(ctx, other); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("used token: %v", err)
	}
	// A token that is no token.
	other.JoinToken = "hello"
	if _, _, err := Credentials(ctx, other); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("bad token: %v", err)
	}
}
