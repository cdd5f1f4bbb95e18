package controlplane

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// start runs the control plane in the background and returns its URL and
// a stop function that returns Run's error.
func start(t *testing.T, cfg Config) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, func(url string) { urls <- url }) }()
	select {
	case url := <-urls:
		return url, func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return after cancel")
				return nil
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("control plane not ready")
	}
	return "", nil
}

func connect(t *testing.T, url string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := messaging.Connect(ctx, url, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return client.New(nc)
}

func TestRunApplyRestartKeepsObjects(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", SyncAlways: true}
	url, stop := start(t, cfg)
	c := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cm := &manifests.ConfigMap{Data: map[string]string{"k": "v"}}
	cm.Name = "settings"
	res, created, err := c.Apply(ctx, cm)
	if err != nil || res != client.ResultCreated {
		t.Fatalf("apply: %s %v", res, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	c.Conn().Close()

	url, stop = start(t, cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	c = connect(t, url)
	got, err := c.Get(ctx, "configmaps", "default", "settings")
	if err != nil {
		t.Fatal(err)
	}
	if got.(*manifests.ConfigMap).Data["k"] != "v" || got.GetObjectMeta().UID != created.GetObjectMeta().UID {
		t.Fatalf("after restart: %+v", got)
	}
}

func TestRunControllersErrorEndsRun(t *testing.T) {
	boom := errors.New("boom")
	started := make(chan struct{})
	cfg := Config{
		DataDir: t.TempDir(),
		Listen:  "127.0.0.1:0",
		RunControllers: func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error {
			if st == nil || b == nil || b.Assignments == nil || nc == nil {
				return errors.New("missing dependencies")
			}
			<-started
			return boom
		},
	}
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), cfg, func(string) { close(started) })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("Run returned %v, want boom", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not end on the controllers' error")
	}
}

func TestRunJoinsExistingNATS(t *testing.T) {
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url, stop := start(t, Config{NATSURL: ns.ClientURL()})
	if url != ns.ClientURL() {
		t.Fatalf("ready with %s, want %s", url, ns.ClientURL())
	}
	c := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Get(ctx, "namespaces", "", "default"); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !ns.Running() {
		t.Fatal("Run stopped a server it did not start")
	}
}

func TestRunBadListen(t *testing.T) {
	err := Run(context.Background(), Config{DataDir: t.TempDir(), Listen: "nonsense"}, nil)
	if err == nil {
		t.Fatal("want error for a bad listen address")
	}
}

func TestLocalURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://0.0.0.0:4222":   "nats://127.0.0.1:4222",
		"nats://[::]:4222":      "nats://127.0.0.1:4222",
		"nats://10.0.0.1:4222":  "nats://10.0.0.1:4222",
		"nats://127.0.0.1:4333": "nats://127.0.0.1:4333",
	} {
		if got := localURL(in); got != want {
			t.Errorf("localURL(%s) = %s, want %s", in, got, want)
		}
	}
}
