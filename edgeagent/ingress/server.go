package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"
)

// Config configures a Server. Zero fields get defaults.
type Config struct {
	// DialTimeout bounds the connection to an endpoint (2s).
	DialTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (10s);
	// IdleTimeout closes idle client connections (60s).
	ReadHeaderTimeout, IdleTimeout time.Duration
	Logger                         *slog.Logger
}

// Server is the Ingress reverse proxy. It serves the Table last given to
// Update; before the first, every request gets 404.
type Server struct {
	cfg       Config
	log       *slog.Logger
	table     atomic.Pointer[Table]
	transport *http.Transport
	proxy     *httputil.ReverseProxy
}

type targetKey struct{}

// New returns a Server with an empty table.
func New(cfg Config) *Server {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	s.transport = &http.Transport{
		Proxy:                 nil, // never an HTTP_PROXY of the environment
		DialContext:           d.DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // long polls and streams are the backend's business
		ExpectContinueTimeout: time.Second,
	}
	s.proxy = &httputil.ReverseProxy{
		Transport: failover{s.transport},
		Rewrite: func(pr *httputil.ProxyRequest) {
			targets, _ := pr.In.Context().Value(targetKey{}).([]string)
			pr.SetURL(&url.URL{Scheme: "http", Host: targets[0]})
			// The backend sees the Host the client asked for, and where
			// the request came from.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Debug("ingress backend", "host", r.Host, "path", r.URL.Path, "err", err)
			if errors.Is(err, context.Canceled) {
				return // the client went away
			}
			http.Error(w, fmt.Sprintf("502 bad gateway: %v", err), http.StatusBadGateway)
		},
		ErrorLog: log.New(slogWriter{s.log}, "", 0),
	}
	return s
}

// Update swaps the route table. Requests under way finish with the table
// they started with; idle connections to endpoints are closed, so none to
// a removed endpoint is reused.
func (s *Server) Update(t *Table) {
	s.table.Store(t)
	s.transport.CloseIdleConnections()
}

// Table returns the table in force.
func (s *Server) Table() *Table { return s.table.Load() }

// ServeHTTP routes r by host and path: 404 when no rule (and no default
// backend) matches, 503 when the Service has no ready endpoint, else the
// request is proxied to the next endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := s.table.Load().Match(r.Host, r.URL.Path)
	if b == nil {
		http.Error(w, fmt.Sprintf("404 not found: no ingress rule for host %q path %q", normalizeHost(r.Host), r.URL.Path), http.StatusNotFound)
		return
	}
	targets := b.Pick()
	if len(targets) == 0 {
		http.Error(w, fmt.Sprintf("503 service unavailable: %s", b.Reason), http.StatusServiceUnavailable)
		return
	}
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, targets)))
}

// failover sends a request to the first endpoint and, when that cannot be
// dialed, to the following ones in turn, as long as the request has no
// body (a body may be consumed by a failed attempt).
type failover struct{ rt http.RoundTripper }

func (f failover) RoundTrip(req *http.Request) (*http.Response, error) {
	targets, _ := req.Context().Value(targetKey{}).([]string)
	resp, err := f.rt.RoundTrip(req)
	for i := 1; err != nil && i < len(targets) && isDialError(err) && (req.Body == nil || req.Body == http.NoBody); i++ {
		retry := req.Clone(req.Context())
		retry.URL.Host = targets[i]
		resp, err = f.rt.RoundTrip(retry)
	}
	return resp, err
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// getCertificate chooses the certificate by SNI from the table in force.
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.table.Load().Certificate(hello.ServerName); c != nil {
		return c, nil
	}
	return nil, errors.New("ingress: no TLS certificate (no Ingress with a usable spec.tls)")
}

// Serve serves HTTP, or HTTPS when useTLS, on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener, useTLS bool) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          log.New(slogWriter{s.log}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if useTLS {
		hs.TLSConfig = &tls.Config{GetCertificate: s.getCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if hs.Shutdown(sctx) != nil {
				hs.Close()
			}
		case <-done:
		}
	}()
	var err error
	if useTLS {
		err = hs.ServeTLS(ln, "", "")
	} else {
		err = hs.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ListenAndServe listens on addr (host:port) and serves until ctx is done;
// ready, if set, is called with the bound address.
func (s *Server) ListenAndServe(ctx context.Context, addr string, useTLS bool, ready func(net.Addr)) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("ingress listen %s: %w", addr, err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	return s.Serve(ctx, ln, useTLS)
}

// slogWriter turns the standard logger of net/http into debug records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("ingress http", "msg", string(p))
	return len(p), nil
}
