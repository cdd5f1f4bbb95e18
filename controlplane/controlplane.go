// Package controlplane wires the control plane: the embedded NATS server
// (or a connection to an existing one), the buckets, the store, the API
// service and the controllers.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"strconv"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/controlplane/publish"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures Run.
type Config struct {
	// DataDir holds the embedded server's JetStream store.
	DataDir string
	// Listen is host:port of the embedded server; port 0 picks a free one.
	Listen string
	// NATSURL joins an existing NATS (with JetStream) instead of embedding.
	NATSURL string
	// SyncAlways fsyncs every JetStream write before acknowledging it.
	SyncAlways bool
	// Replicas of the buckets (3 on a three-server cluster).
	Replicas int
	// ServiceCIDR is the range of Service cluster IPs
	// (ipam.DefaultServiceCIDR when empty).
	ServiceCIDR string
	// ClusterCIDR is the range node pod CIDRs are cut from
	// (nodeipam.DefaultClusterCIDR when empty); RunControllers reads it.
	ClusterCIDR string
	// Logger receives what the control plane has to say; discarded if nil.
	Logger *slog.Logger
	// RunControllers runs the controllers until ctx is done; an error
	// ends Run. Nil runs none.
	RunControllers func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error
}

// shutdownTimeout bounds draining the connection on the way out.
const shutdownTimeout = 10 * time.Second

// Run runs the control plane until ctx is done, then stops it cleanly.
// ready, if not nil, is called with the NATS URL once the API is served.
func Run(ctx context.Context, cfg Config, ready func(url string)) (err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	url := cfg.NATSURL
	if url == "" {
		ns, err := startServer(cfg)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
			log.Info("NATS server stopped")
		}()
		url = localURL(ns.ClientURL())
		log.Info("NATS server started", "url", url, "dataDir", cfg.DataDir, "syncAlways", cfg.SyncAlways)
	}
	nc, err := messaging.Connect(ctx, url, "edge-controlplane",
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrl()) }),
	)
	if err != nil {
		return err
	}
	defer drain(nc, log)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{Replicas: cfg.Replicas})
	if err != nil {
		return err
	}
	st := store.New(b.Objects)
	serviceCIDR := cfg.ServiceCIDR
	if serviceCIDR == "" {
		serviceCIDR = ipam.DefaultServiceCIDR
	}
	services, err := ipam.NewServices(b.Leases, st, serviceCIDR)
	if err != nil {
		return err
	}
	if cfg.ClusterCIDR != "" { // checked here so that a typo stops the start
		if _, err := ipam.NewPodCIDRs(b.Leases, cfg.ClusterCIDR, ipam.DefaultNodeMaskSize); err != nil {
			return err
		}
	}
	srv := api.New(st, nc, api.Options{Logger: log, Services: services})
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer func() {
		if serr := srv.Stop(); serr != nil {
			log.Warn("stop API", "err", serr)
		}
	}()
	log.Info("API serving", "service", messaging.APIServiceName, "version", messaging.APIVersion)
	stopPublish, err := publish.Start(ctx, st, nc, publish.Options{Logger: log}, messaging.BucketOptions{Replicas: cfg.Replicas})
	if err != nil {
		return err
	}
	defer stopPublish()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctrlErr := make(chan error, 1)
	ctrlRunning := cfg.RunControllers != nil
	if ctrlRunning {
		go func() { ctrlErr <- cfg.RunControllers(ctx, st, b, nc) }()
	}
	if ready != nil {
		ready(url)
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("control plane stopping")
			// Let the controllers finish (the leader releases its lease)
			// while NATS is still up.
			if ctrlRunning {
				select {
				case <-ctrlErr:
				case <-time.After(10 * time.Second):
					log.Warn("controllers did not stop within 10s")
				}
			}
			return nil
		case err := <-ctrlErr:
			ctrlRunning = false
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("controllers: %w", err)
			}
		}
	}
}

func startServer(cfg Config) (*server.Server, error) {
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:4222"
	}
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("listen address %q: invalid port", listen)
	}
	if port == 0 {
		port = -1 // random
	}
	return messaging.StartServer(messaging.ServerConfig{
		DataDir:    cfg.DataDir,
		Host:       host,
		Port:       port,
		SyncAlways: cfg.SyncAlways,
		ServerName: "edge-controlplane",
	})
}

// localURL replaces an unspecified listen address (0.0.0.0, ::) in a
// server URL by the loopback address, so that the URL can be dialled.
func localURL(serverURL string) string {
	u, err := neturl.Parse(serverURL)
	if err != nil {
		return serverURL
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u.String()
}

// drain flushes what the connection still has to send, then closes it.
func drain(nc *nats.Conn, log *slog.Logger) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		if !errors.Is(err, nats.ErrConnectionClosed) {
			log.Warn("drain NATS connection", "err", err)
		}
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(shutdownTimeout):
		nc.Close()
	}
}
