package messaging

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// DataDir holds the JetStream store (the server uses DataDir/jetstream).
	DataDir string
	// Host to listen on; 127.0.0.1 when empty.
	Host string
	// Port to listen on; -1 picks a random free port, 0 the NATS default.
	Port int
	// SyncAlways makes JetStream fsync every write before acknowledging it.
	SyncAlways bool
	// ServerName names the server; random when empty.
	ServerName string
	// Logging enables the server's own log output (to stderr).
	Logging bool
}

// MaxPayload is the largest message the embedded server accepts: above the
// API's 4 MiB request limit, so that a too large request gets a clear API
// error instead of a connection error.
const MaxPayload = 8 << 20

// readyTimeout bounds how long StartServer waits for the server to accept
// connections.
const readyTimeout = 10 * time.Second

// StartServer starts an embedded nats-server with JetStream and waits until it
// accepts connections. The caller owns the server: Shutdown then
// WaitForShutdown.
func StartServer(cfg ServerConfig) (*server.Server, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("start nats server: data dir is required")
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	opts := &server.Options{
		ServerName:             cfg.ServerName,
		Host:                   host,
		Port:                   cfg.Port,
		JetStream:              true,
		StoreDir:               cfg.DataDir, // the server stores in StoreDir/jetstream
		SyncAlways:             cfg.SyncAlways,
		NoLog:                  !cfg.Logging,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
		MaxPayload:             MaxPayload,
	}
	if cfg.SyncAlways {
		// SyncInterval must be set for SyncAlways to be honoured as in a
		// config file's `sync_interval: always`.
		opts.SyncInterval = 2 * time.Minute
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	if cfg.Logging {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats server on %s:%d: not ready after %s", host, cfg.Port, readyTimeout)
	}
	return ns, nil
}

// Connect dials url and keeps reconnecting forever, also when the first
// attempt fails. It returns once the first connection is up or ctx is done.
func Connect(ctx context.Context, url string, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return nil, fmt.Errorf("connect to %s: connection closed", url)
		}
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("connect to %s: %w", url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nc, nil
}
