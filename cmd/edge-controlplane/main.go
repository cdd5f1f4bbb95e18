// Command edge-controlplane runs the control plane: an embedded NATS server
// with JetStream (or a connection to an existing one), the API service and
// the controllers.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/dashboard"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
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
	var logLevel, logFormat string
	var dev bool // dev mode: no TLS (and no auth)
	var httpAddr, httpTokenFile string
	var memoryLimit string
	var gcPercent int
	var tlsFlags tlsFlags
	cmd := &cobra.Command{
		Use:           "edge-controlplane",
		Short:         "Run the edge orchestrator control plane",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			// The controllers (controller, leader, scheduler, …) log
			// through slog.Default(), and the standard log package
			// through it once set: all of it in the flags' format and
			// level.
			slog.SetDefault(logger)
			mem, err := setMemory(memoryLimit, cmd.Flags().Changed("memory-limit"), gcPercent, cmd.Flags().Changed("gc-percent"))
			if err != nil {
				return err
			}
			logger.Info("Go memory", "softLimitMiB", mem.limit>>20, "limitFrom", mem.from, "gcPercent", mem.gcPercent)
			if cfg.TLS, err = tlsFlags.options(cmd, dev, cfg.NATSURL != ""); err != nil {
				return err
			}
			if cfg.TLS == nil && cfg.NATSURL == "" {
				cfg.Logger.Warn("NATS without TLS: traffic and credentials travel in clear text", "dev", dev)
			}
			// Authentication is on unless --dev; with --nats-url the
			// operator is external (docs/security.md) and --creds is the
			// control plane's own identity.
			cfg.Auth = !dev && cfg.NATSURL == ""
			if httpAddr != "" {
				cfg.Dashboard = &dashboard.Config{Listen: httpAddr, TokenFile: httpTokenFile, Dev: dev}
			} else if httpTokenFile != "" {
				return fmt.Errorf("--http-token-file: only with --http (the dashboard is off)")
			}
			if cfg.Creds != "" && cfg.NATSURL == "" {
				return fmt.Errorf("--creds: only with --nats-url (the embedded server issues the control plane's own credentials)")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			return controlplane.Run(ctx, cfg, func(url string) {
				fmt.Fprintf(out, "edge-controlplane ready, NATS at %s%s%s\n", url, tlsFlags.readyNote(cfg), authNote(cfg))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "./edge-data", "directory of the JetStream store")
	f.StringVar(&cfg.SecretsKeyFile, "secrets-key-file", "", "keys that encrypt Secrets at rest, one id:base64 per line, first = current (default <data-dir>/secrets.key, created 0600 on first start; see docs/security.md)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:4222", "host:port of the embedded NATS server (port 0 picks a free port)")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "join this NATS (with JetStream) instead of embedding a server; URL[,URL...] names several servers of a cluster (docs/scale-out.md)")
	f.BoolVar(&cfg.SyncAlways, "sync-always", true, "fsync every JetStream write before acknowledging it (survives power cuts)")
	f.IntVar(&cfg.Replicas, "replicas", 1, "replicas of every bucket, object store and stream (3 on a three-server NATS cluster; more than 1 needs --nats-url); existing ones are scaled up, never down")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text (logfmt) or json (one object per line)")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", ipam.DefaultServiceCIDR, "range of Service cluster IPs")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", ipam.DefaultClusterCIDR, "range the nodes' pod CIDRs (/24 each) are cut from")
	f.BoolVar(&dev, "dev", false, "dev mode: NATS without TLS and without authentication; never on an untrusted network")
	f.StringVar(&httpAddr, "http", "", "serve the read-only web dashboard and Prometheus /metrics on host:port, e.g. 127.0.0.1:8080 (off when empty; HTTPS with the NATS certificate when NATS TLS is on, else loopback only unless --dev; docs/dashboard.md)")
	f.StringVar(&httpTokenFile, "http-token-file", "", "bearer token of the dashboard and /metrics (default <data-dir>/auth/dashboard.token, created 0600 on first start; no token with --dev)")
	f.StringVar(&cfg.Creds, "creds", "", "with --nats-url: NATS creds file of the control plane's own (admin) user")
	f.StringVar(&cfg.AccountSigningKey, "account-signing-key", "", "with --nats-url and --creds: file with a signing seed of the account, to issue join tokens and node credentials")
	f.BoolVar(&tlsFlags.on, "tls", true, "serve NATS over TLS only; without --tls-cert with a CA and certificate generated in <data-dir>/tls")
	f.StringVar(&tlsFlags.cert, "tls-cert", "", "server certificate (PEM, chain first) to use instead of the generated one; needs --tls-key")
	f.StringVar(&tlsFlags.key, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&tlsFlags.clientCA, "tls-client-ca", "", "require client certificates signed by a CA in this PEM file")
	f.StringSliceVar(&tlsFlags.sans, "tls-san", nil, "extra DNS name or IP address of the generated server certificate (repeatable, comma-separated)")
	f.StringVar(&memoryLimit, "memory-limit", memoryAuto,
		"soft limit of the control plane's Go memory (as GOMEMLIMIT): auto (80% of the cgroup's memory limit, e.g. systemd MemoryMax=; none without one), 0 for none, or a quantity such as 900Mi; env GOMEMLIMIT wins over the default. The collector works harder near it; it is not a cap (docs/scale.md)")
	f.IntVar(&gcPercent, "gc-percent", 100,
		"Go garbage collection target: heap growth in percent between collections (as GOGC; env GOGC wins over the default); -1 turns the collector off (then only --memory-limit triggers a collection)")
	return cmd
}

// tlsFlags are the --tls* flags.
type tlsFlags struct {
	on                  bool
	cert, key, clientCA string
	sans                []string
}

// options turns the flags into the embedded server's TLS options: nil
// (plaintext) in dev mode, with --tls=false, or when joining --nats-url.
func (t tlsFlags) options(cmd *cobra.Command, dev, external bool) (*messaging.TLSOptions, error) {
	var set []string
	for _, name := range []string{"tls-cert", "tls-key", "tls-client-ca", "tls-san"} {
		if cmd.Flags().Changed(name) {
			set = append(set, "--"+name)
		}
	}
	switch {
	case external && len(set) > 0:
		return nil, fmt.Errorf("%s: configure the embedded server; with --nats-url, TLS is the NATS server's own", strings.Join(set, ", "))
	case (dev || !t.on) && len(set) > 0:
		mode := "--tls=false"
		if dev {
			mode = "--dev"
		}
		return nil, fmt.Errorf("%s: need TLS, which %s turns off", strings.Join(set, ", "), mode)
	case external || dev || !t.on:
		return nil, nil
	case (t.cert == "") != (t.key == ""):
		return nil, fmt.Errorf("--tls-cert and --tls-key: give both or neither")
	}
	return &messaging.TLSOptions{SANs: t.sans, CertFile: t.cert, KeyFile: t.key, ClientCAFile: t.clientCA}, nil
}

// readyNote tells clients which CA verifies the server: the generated one.
func (t tlsFlags) readyNote(cfg controlplane.Config) string {
	if cfg.TLS == nil || cfg.TLS.CertFile != "" {
		return ""
	}
	ca := filepath.Join(messaging.TLSDir(cfg.DataDir), messaging.CAFileName)
	if abs, err := filepath.Abs(ca); err == nil {
		ca = abs
	}
	return " with CA " + ca
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger builds the process logger from --log-level and --log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	l, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// authNote tells where the operators' creds files are.
func authNote(cfg controlplane.Config) string {
	if !cfg.Auth {
		return ""
	}
	dir := auth.Dir(cfg.DataDir)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return fmt.Sprintf(", admin creds %s, readonly creds %s", filepath.Join(dir, auth.AdminCredsFile), filepath.Join(dir, auth.ReadonlyCredsFile))
}
