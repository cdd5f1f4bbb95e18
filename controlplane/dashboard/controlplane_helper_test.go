package dashboard_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/dashboard"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
)

// startControlPlane runs a control plane with its controllers and the
// dashboard on random loopback ports under dir until the test ends, and
// returns its NATS URL, the dashboard's base URL and the dashboard token.
func startControlPlane(t *testing.T, ctx context.Context, dir string) (natsURL, dashURL, token string) {
	t.Helper()
	dashc := make(chan string, 1)
	natsc := make(chan string, 1)
	cpCtx, cpCancel := context.WithCancel(context.Background())
	cpDone := make(chan error, 1)
	cfg := controlplane.Config{
		DataDir: filepath.Join(dir, "controlplane"),
		Listen:  "127.0.0.1:0",
		RunControllers: func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error {
			return controllers.Run(ctx, st, b, nc)
		},
		Dashboard: &dashboard.Config{Listen: "127.0.0.1:0", Ready: func(u string) { dashc <- u }},
	}
	go func() { cpDone <- controlplane.Run(cpCtx, cfg, func(u string) { natsc <- u }) }()
	t.Cleanup(func() {
		cpCancel()
		if err := <-cpDone; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	select {
	case natsURL = <-natsc:
	case err := <-cpDone:
		t.Fatalf("control plane: %v", err)
	case <-ctx.Done():
		t.Fatal("control plane not ready")
	}
	dashURL = <-dashc // sent before the NATS URL
	raw, err := os.ReadFile(dashboard.TokenPath(cfg.DataDir))
	if err != nil {
		t.Fatalf("dashboard token: %v", err)
	}
	return natsURL, dashURL, strings.TrimSpace(string(raw))
}
