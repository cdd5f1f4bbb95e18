// Package api serves the control-plane API: a nats.go micro service with one
// endpoint per verb (one file each), backed by the store, and the watch
// fanout that republishes every stored change on messaging.WatchSubject.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Defaults of Options.
const (
	DefaultMaxRequestBytes = 4 << 20
	DefaultRequestTimeout  = 10 * time.Second
	DefaultConcurrency     = 64
)

// SystemNamespaces exist from the start and cannot be deleted.
var SystemNamespaces = []string{"default", "edge-system"}

// Options tune the server; zero values take the defaults.
type Options struct {
	// MaxRequestBytes bounds a request body (Invalid "request too large").
	MaxRequestBytes int
	// RequestTimeout bounds the handling of one request.
	RequestTimeout time.Duration
	// Concurrency bounds the requests handled at once.
	Concurrency int
	// Logger receives failures that cannot be returned to a caller.
	Logger *slog.Logger
	// Services allocates Service cluster IPs and node ports; nil
	// stores Services as they come.
	Services *ipam.Services
	// Auth issues join tokens and node credentials and revokes them;
	// nil when authentication is off (--dev).
	Auth *AuthOptions
}

// Server is the API service.
type Server struct {
	st   *store.Store
	nc   *nats.Conn
	opts Options
	log  *slog.Logger

	sem chan struct{}
	// allocMu serializes the Service allocations that may claim
	// addresses (services.go).
	allocMu sync.Mutex
	// usage is the bucket of usage reports (usage.go).
	usage usageBucket
	// users authorizes RBAC users (user.go, rbacauthz.go).
	users *userAuthz

	mu       sync.Mutex // guards the fields below and Adds to reqs
	svc      micro.Service
	svcSec   micro.Service // node-scoped, token, revoke and join endpoints (node.go)
	cancel   context.CancelFunc
	stopping bool
	reqs     sync.WaitGroup // requests in flight
	fanned   chan struct{}  // closed when the fanout has ended
}

// New returns a server over st answering on nc. Start serves it.
func New(st *store.Store, nc *nats.Conn, opts Options) *Server {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{st: st, nc: nc, opts: opts, log: log, sem: make(chan struct{}, opts.Concurrency)}
}

// handler handles one decoded request body and returns the result.
type handler func(ctx context.Context, body []byte) (any, error)

// Start creates the system namespaces, starts the watch fanout and
// registers the endpoints. Stop stops them; the end of ctx ends the fanout
// but lets requests in flight finish.
func (s *Server) Start(ctx context.Context) error {
	if err := s.ensureNamespaces(ctx); err != nil {
		return err
	}
	reqCtx := context.WithoutCancel(ctx)
	ctx, cancel := context.WithCancel(ctx)
	events, err := s.st.WatchAll(ctx)
	if err != nil {
		cancel()
		return fmt.Errorf("start watch fanout: %w", err)
	}
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        messaging.APIServiceName,
		Version:     messaging.APIVersion,
		Description: "edge orchestrator control-plane API",
	})
	if err != nil {
		cancel()
		return fmt.Errorf("start API service: %w", err)
	}
	verbs := []verbHandler{
		{messaging.VerbApply, s.apply},
		{client.VerbApplyBatch, s.applyBatch},
		{messaging.VerbGet, s.get},
		{messaging.VerbList, s.list},
		{messaging.VerbDelete, s.delete},
		{messaging.VerbUpdate, s.update},
		{messaging.VerbUpdateStatus, s.updateStatus},
		{messaging.VerbTop, s.top},
	}
	for _, v := range verbs {
		if err := svc.AddEndpoint(v.verb, s.serve(reqCtx, v.verb, v.h), micro.WithEndpointSubject(messaging.APISubject(v.verb))); err != nil {
			cancel()
			_ = svc.Stop()
			return fmt.Errorf("start API endpoint %s: %w", v.verb, err)
		}
	}
	svcSec, err := s.addSecurityEndpoints(reqCtx)
	if err != nil {
		cancel()
		_ = svc.Stop()
		return err
	}
	// RBAC users' verbs and the user admin verbs (user.go).
	if err := s.addUserEndpoints(reqCtx, ctx, svcSec); err != nil {
		cancel()
		_ = svc.Stop()
		_ = svcSec.Stop()
		return err
	}
	// Usage reports come only on the node-scoped subjects (usage.go).
	usageName := "node-" + messaging.VerbUsage
	if err := svcSec.AddEndpoint(usageName, s.serve(reqCtx, usageName, s.asNode(messaging.VerbUsage, s.reportUsage)), micro.WithEndpointSubject(messaging.NodeAPIFilter(messaging.VerbUsage))); err != nil {
		cancel()
		_ = svc.Stop()
		_ = svcSec.Stop()
		return fmt.Errorf("start API endpoint %s: %w", usageName, err)
	}
	// The endpoints' subscriptions must reach the server before Start
	// returns: callers announce the API as ready right after.
	if err := s.nc.FlushTimeout(5 * time.Second); err != nil {
		cancel()
		_ = svc.Stop()
		_ = svcSec.Stop()
		return fmt.Errorf("start API: flush subscriptions: %w", err)
	}
	fanned := make(chan struct{})
	s.mu.Lock()
	s.svc, s.svcSec, s.cancel, s.stopping, s.fanned = svc, svcSec, cancel, false, fanned
	s.mu.Unlock()
	go func() {
		defer close(fanned)
		s.fanout(ctx, events, s.st.WatchAll, rewatchDelay)
	}()
	return nil
}

// Stop stops taking requests, lets those in flight finish, then stops the
// fanout. It is idempotent.
func (s *Server) Stop() error {
	s.mu.Lock()
	svc, svcSec, cancel, fanned := s.svc, s.svcSec, s.cancel, s.fanned
	s.svc, s.svcSec, s.cancel, s.stopping = nil, nil, nil, true
	s.mu.Unlock()
	if svc == nil {
		return nil
	}
	err := svc.Stop()
	if serr := svcSec.Stop(); err == nil {
		err = serr
	}
	s.reqs.Wait()
	cancel()
	<-fanned
	if err != nil {
		return fmt.Errorf("stop API service: %w", err)
	}
	return nil
}

// serve adapts h to a micro handler: it runs each request in its own
// goroutine (bounded), checks the size and wraps result or error in a
// client.Response.
func (s *Server) serve(ctx context.Context, verb string, h handler) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		start := time.Now() // measured to the reply (metrics.go)
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			s.respondTimed(verb, req, nil, client.Errorf(client.CodeUnavailable, "the API server is shutting down"), start)
			return
		}
		s.reqs.Add(1)
		s.mu.Unlock()
		s.sem <- struct{}{} // a full server holds back the subscription
		go func() {
			defer s.reqs.Done()
			defer func() { <-s.sem }()
			requestsInFlight.Inc()
			defer requestsInFlight.Dec()
			if len(req.Data()) > s.opts.MaxRequestBytes {
				s.respondTimed(verb, req, nil, client.Errorf(client.CodeInvalid, "request too large: %d bytes (limit %d)", len(req.Data()), s.opts.MaxRequestBytes), start)
				return
			}
			rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
			defer cancel()
			rctx = withSubject(rctx, req.Subject())
			res, err := h(rctx, req.Data())
			s.respondTimed(verb, req, res, err, start)
		}()
	})
}

func (s *Server) respond(verb string, req micro.Request, res any, err error) {
	var resp client.Response
	if err != nil {
		resp.Error = statusError(err)
		if resp.Error.Code == client.CodeInternal || resp.Error.Code == client.CodeUnavailable {
			s.log.Warn("API request failed", "verb", verb, "err", err)
		}
	} else {
		raw, merr := json.Marshal(res)
		if merr != nil {
			resp.Error = client.Errorf(client.CodeInternal, "%s: encode result: %v", verb, merr)
		} else {
			resp.Result = raw
		}
	}
	data, _ := json.Marshal(resp)
	if rerr := req.Respond(data); rerr != nil {
		s.log.Warn("API reply failed", "verb", verb, "err", rerr)
	}
}

// ensureNamespaces creates the system namespaces that are missing.
func (s *Server) ensureNamespaces(ctx context.Context) error {
	for _, name := range SystemNamespaces {
		ns := &manifests.Namespace{}
		ns.Name = name
		manifests.Default(ns)
		_, err := s.st.Create(ctx, ns)
		if err != nil && client.CodeOf(err) != client.CodeExists {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return nil
}

// decodeRequest strictly decodes a request body into v.
func decodeRequest(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return client.Errorf(client.CodeInvalid, "decode request: %v", err)
	}
	if dec.More() {
		return client.Errorf(client.CodeInvalid, "decode request: unexpected data after the request")
	}
	return nil
}

// encodeObject returns obj's JSON with apiVersion and kind set.
func encodeObject(obj manifests.Object) (json.RawMessage, error) {
	if err := manifests.SetKind(obj); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.GetObjectMeta().Name, err)
	}
	return raw, nil
}
