package messaging

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/jwt/v2"
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
	// Logger, if set, receives the server's warnings and errors (its
	// notices at debug level; its own debug and trace output stays off).
	Logger *slog.Logger
	// Auth runs the server in operator mode (JWT authentication, see
	// messaging/auth); nil accepts every client (dev mode).
	Auth *OperatorAuth
	// TLS, if not nil, makes the server accept TLS connections only
	// (see NewServerTLS); its URL is then tls://.
	TLS *tls.Config
	// TLSVerify requires a client certificate (set with TLS.ClientCAs).
	TLSVerify bool
}

// OperatorAuth is what operator mode needs: the operator's JWT and the
// JWTs of the system account and of the other accounts, held by a memory
// resolver that UpdateAccount updates (revocations).
type OperatorAuth struct {
	OperatorJWT      string
	SystemAccountJWT string
	AccountJWTs      []string
}

// apply puts opts in operator mode.
func (a *OperatorAuth) apply(opts *server.Options) error {
	oc, err := jwt.DecodeOperatorClaims(a.OperatorJWT)
	if err != nil {
		return fmt.Errorf("operator JWT: %w", err)
	}
	sc, err := jwt.DecodeAccountClaims(a.SystemAccountJWT)
	if err != nil {
		return fmt.Errorf("system account JWT: %w", err)
	}
	res := &server.MemAccResolver{}
	for _, raw := range append([]string{a.SystemAccountJWT}, a.AccountJWTs...) {
		ac, err := jwt.DecodeAccountClaims(raw)
		if err != nil {
			return fmt.Errorf("account JWT: %w", err)
		}
		if err := res.Store(ac.Subject, raw); err != nil {
			return fmt.Errorf("store account %s: %w", ac.Name, err)
		}
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{oc}
	opts.SystemAccount = sc.Subject
	opts.AccountResolver = res
	return nil
}

// UpdateAccount pushes a new JWT of an account to the embedded server ns
// (started with an OperatorAuth): clients of users it revokes are
// disconnected at once and cannot connect again.
func UpdateAccount(ns *server.Server, accountJWT string) error {
	ac, err := jwt.DecodeAccountClaims(accountJWT)
	if err != nil {
		return fmt.Errorf("update account: %w", err)
	}
	res := ns.AccountResolver()
	if res == nil {
		return fmt.Errorf("update account %s: the server is not in operator mode", ac.Name)
	}
	if err := res.Store(ac.Subject, accountJWT); err != nil {
		return fmt.Errorf("update account %s: %w", ac.Name, err)
	}
	acc, err := ns.LookupAccount(ac.Subject)
	if err != nil {
		return fmt.Errorf("update account %s: %w", ac.Name, err)
	}
	ns.UpdateAccountClaims(acc, ac)
	return nil
}

// MaxPayload is the largest message the embedded server accepts: above the
// API's 4 MiB request limit, so that a too large request gets a clear API
// error instead of a connection error.
const MaxPayload = 8 << 20

// MaxClosedClients is how many closed connections the embedded server
// remembers (with their subscriptions) for its connection monitoring
// (connz?state=closed, which the control plane does not serve): 100
// instead of nats-server's 10,000, which a fleet of 10,000 agents
// reconnecting after a network cut would fill with records kept for
// nothing.
const MaxClosedClients = 100

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
		NoLog:                  !cfg.Logging && cfg.Logger == nil,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
		MaxPayload:             MaxPayload,
		MaxClosedClients:       MaxClosedClients,
		TLSConfig:              cfg.TLS,
		TLSVerify:              cfg.TLS != nil && cfg.TLSVerify,
	}
	if cfg.Auth != nil {
		if err := cfg.Auth.apply(opts); err != nil {
			return nil, fmt.Errorf("start nats server: %w", err)
		}
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
	switch {
	case cfg.Logger != nil:
		ns.SetLogger(slogAdapter{cfg.Logger}, false, false)
	case cfg.Logging:
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

// slogAdapter is the embedded server's logger (server.Logger) over slog;
// a line is formatted only when its level is enabled.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(level slog.Level, format string, v []any) {
	if a.l.Enabled(context.Background(), level) {
		a.l.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}

// Noticef: the server's banner and routine notices, debug here (its
// warnings and errors are what an operator needs to see).
func (a slogAdapter) Noticef(format string, v ...any) { a.log(slog.LevelDebug, format, v) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.log(slog.LevelWarn, format, v) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.log(slog.LevelDebug, format, v) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.log(slog.LevelDebug, format, v) }
