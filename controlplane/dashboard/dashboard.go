// Package dashboard serves the control plane's read-only web dashboard:
// nodes (online/offline, last seen, pods per node), pods, workloads,
// fleet rollouts with their waves, and live events. The page, its script
// and its style sheet are embedded (no external assets: it works
// airgapped); the script reads JSON from /api/ and follows /api/stream
// (Server-Sent Events) so that the page updates without a reload.
//
// The data comes from informers (controller.Informer) over the store's
// watches: one in-memory copy of the objects the dashboard shows. Lists
// are paginated (default 100, at most 1000 rows per request) with totals
// and counts by state, so a fleet of 10,000 nodes costs a page of the
// same size as a fleet of 100. See docs/dashboard.md.
package dashboard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
)

// Config configures the dashboard.
type Config struct {
	// Listen is the host:port to serve on (port 0 picks a free one).
	// Without TLS, and outside Dev, only a loopback address is accepted:
	// the token would otherwise travel in clear text.
	Listen string
	// TokenFile holds the bearer token that every request must present
	// (Authorization: Bearer TOKEN, or basic auth with TOKEN as the
	// password). Default <DataDir>/auth/dashboard.token, created 0600
	// with a random token on first start. Unused in Dev.
	TokenFile string
	// Dev serves without authentication (the control plane's --dev).
	Dev bool
	// DataDir is the control plane's data directory (for TokenFile's
	// default).
	DataDir string
	// TLS, if set, serves HTTPS with this configuration (the control
	// plane passes its NATS server's certificate; client certificates are
	// not asked for).
	TLS *tls.Config
	// Logger receives what the dashboard has to say; discarded if nil.
	Logger *slog.Logger
	// Ready, if set, is called with the dashboard's URL once it serves.
	Ready func(url string)
}

// Watcher is what the dashboard needs of the store.
type Watcher = controller.Watcher

// resources are the resources the dashboard caches.
var resources = []string{"nodes", "pods", "deployments", "daemonsets", "replicasets", "jobs", "rollouts", "events"}

// Limits.
const (
	// DefaultPageSize and MaxPageSize bound the rows of one list request.
	DefaultPageSize = 100
	MaxPageSize     = 1000
	// maxStreams bounds the concurrent /api/stream clients.
	maxStreams = 64
	// batchInterval is how often changes are sent to stream clients.
	batchInterval = 500 * time.Millisecond
	// shutdownTimeout bounds the HTTP server's shutdown.
	shutdownTimeout = 5 * time.Second
)

// Server is the dashboard's HTTP handler and the caches behind it.
type Server struct {
	cfg   Config
	token string // "" in Dev
	log   *slog.Logger
	inf   map[string]*controller.Informer
	hub   *hub
	now   func() time.Time
}

// New returns a dashboard over w. It reads (or creates) the token unless
// cfg.Dev. Call Run to fill its caches.
func New(w Watcher, cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger, inf: map[string]*controller.Informer{}, hub: newHub(), now: time.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if !cfg.Dev {
		path := cfg.TokenFile
		if path == "" {
			if cfg.DataDir == "" {
				return nil, errors.New("dashboard: authentication needs a token file (--http-token-file) or a data directory")
			}
			path = TokenPath(cfg.DataDir)
		}
		tok, created, err := loadOrCreateToken(path)
		if err != nil {
			return nil, err
		}
		s.token, s.cfg.TokenFile = tok, path
		if created {
			s.log.Info("dashboard: token created", "tokenFile", path)
		}
	}
	for _, r := range resources {
		i := controller.NewInformer(w, r)
		i.AddHandler(s.changed(r, i))
		s.inf[r] = i
	}
	return s, nil
}

// TokenFile is the token file in use ("" in Dev).
func (s *Server) TokenFile() string { return s.cfg.TokenFile }

// Run fills the caches and sends changes to stream clients until ctx is
// done.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, i := range s.inf {
		wg.Go(func() { _ = i.Run(ctx) })
	}
	wg.Go(func() { s.hub.run(ctx, batchInterval) })
	wg.Wait()
	s.hub.closeAll()
}

// synced reports whether every cache holds the complete state.
func (s *Server) synced() bool {
	for _, i := range s.inf {
		if !i.HasSynced() {
			return false
		}
	}
	return true
}

// Start serves the dashboard on cfg.Listen until ctx is done or stop is
// called; stop waits until it is down.
func Start(ctx context.Context, w Watcher, cfg Config) (stop func(), err error) {
	tlsCfg, err := checkListen(cfg)
	if err != nil {
		return nil, err
	}
	s, err := New(w, cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen on %s: %w", cfg.Listen, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		TLSConfig:         tlsCfg,
		BaseContext:       func(net.Listener) context.Context { return ctx }, // ends streams on stop
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	wg.Go(func() {
		var err error
		if tlsCfg != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("dashboard: serve", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	})
	url := baseURL(ln.Addr().String(), tlsCfg != nil)
	attrs := []any{"url", url, "tls", tlsCfg != nil}
	if s.token != "" {
		attrs = append(attrs, "tokenFile", s.cfg.TokenFile)
	} else {
		attrs = append(attrs, "auth", "off (--dev)")
	}
	s.log.Info("dashboard serving", attrs...)
	if host, _, _ := net.SplitHostPort(cfg.Listen); cfg.Dev && !isLoopback(host) {
		s.log.Warn("dashboard: no authentication (--dev) on a non-loopback address: anyone who reaches it sees the fleet", "listen", cfg.Listen)
	}
	if cfg.Ready != nil {
		cfg.Ready(url)
	}
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }, nil
}

// checkListen validates cfg.Listen and returns the TLS configuration to
// serve with (nil: plain HTTP).
func checkListen(cfg Config) (*tls.Config, error) {
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("dashboard: --http %q: want host:port (e.g. 127.0.0.1:8080): %w", cfg.Listen, err)
	}
	if port == "" {
		return nil, fmt.Errorf("dashboard: --http %q: missing port", cfg.Listen)
	}
	if cfg.TLS == nil && !cfg.Dev && !isLoopback(host) {
		return nil, fmt.Errorf("dashboard: --http %q: plain HTTP would send the token in clear text; listen on a loopback address (127.0.0.1:8080), or serve NATS with TLS (the dashboard then uses its certificate)", cfg.Listen)
	}
	if cfg.TLS == nil {
		return nil, nil
	}
	t := cfg.TLS.Clone()
	// Browsers have no client certificate: the token authenticates.
	t.ClientAuth, t.ClientCAs = tls.NoClientCert, nil
	return t, nil
}

// isLoopback reports whether host names only the local machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// baseURL is the URL of a listener's address; an unspecified address is
// shown as the loopback one.
func baseURL(addr string, https bool) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}
