// Command edge-controlplane runs the control plane: an embedded NATS server
// with JetStream (or a connection to an existing one), the API service and
// the controllers.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "edge-controlplane:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var cfg controlplane.Config
	cfg.RunControllers = func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error {
		opts, err := controllers.DefaultOptions()
		if err != nil {
			return err
		}
		opts.ClusterCIDR = cfg.ClusterCIDR
		return controllers.RunWithOptions(ctx, st, b, opts)
	}
	var logLevel string
	cmd := &cobra.Command{
		Use:           "edge-controlplane",
		Short:         "Run the edge orchestrator control plane",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLevel(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			return controlplane.Run(ctx, cfg, func(url string) {
				fmt.Fprintf(out, "edge-controlplane ready, NATS at %s\n", url)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "./edge-data", "directory of the JetStream store")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:4222", "host:port of the embedded NATS server (port 0 picks a free port)")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "join this NATS (with JetStream) instead of embedding a server")
	f.BoolVar(&cfg.SyncAlways, "sync-always", true, "fsync every JetStream write before acknowledging it (survives power cuts)")
	f.IntVar(&cfg.Replicas, "replicas", 1, "replicas of each bucket (3 on a three-server NATS cluster)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", ipam.DefaultServiceCIDR, "range of Service cluster IPs")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", ipam.DefaultClusterCIDR, "range the nodes' pod CIDRs (/24 each) are cut from")
	return cmd
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
