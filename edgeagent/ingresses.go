package edgeagent

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/ingress"
	"github.com/edgeorch/edgeorch/manifests"
)

// ingressSecretRefresh is how often the TLS Secrets of the Ingresses are
// read again (nodes may not watch Secrets): a renewed certificate is
// served at most this long after it was applied.
const ingressSecretRefresh = time.Minute

// ingresses watches the cluster's Ingresses and the TLS Secrets they
// name and serves them with the Ingress proxy (edgeagent/ingress) on
// Config.IngressHTTPAddr and Config.IngressHTTPSAddr, routing to the
// Services and Endpoints of the agent's services view. Like that view it
// is kept in memory only: no Ingress and no TLS Secret is written to the
// disk, and offline the last table stays in force.
type ingresses struct {
	a    *Agent
	srv  *ingress.Server
	kick chan struct{}

	mu      sync.Mutex
	ings    map[string]*manifests.Ingress // by namespace/name
	secrets map[string]*manifests.Secret  // by namespace/name

	lastErr string // of the last Build (rebuildLoop only)
}

func newIngresses(a *Agent) *ingresses {
	return &ingresses{
		a:    a,
		srv:  ingress.New(ingress.Config{Logger: a.log}),
		kick: make(chan struct{}, 1),
		ings: map[string]*manifests.Ingress{}, secrets: map[string]*manifests.Secret{},
	}
}

// changed asks for the route table to be built again (Services or
// Endpoints changed).
func (g *ingresses) changed() {
	if g == nil {
		return
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// run serves the listeners, rebuilds the table on every change, and
// watches the Ingresses (a full list after every reconnect) until ctx is
// done.
func (g *ingresses) run(ctx context.Context) {
	for _, l := range []struct {
		addr   string
		useTLS bool
	}{{g.a.cfg.IngressHTTPAddr, false}, {g.a.cfg.IngressHTTPSAddr, true}} {
		if l.addr != "" {
			g.a.goRun(func() { g.serve(ctx, l.addr, l.useTLS) })
		}
	}
	g.a.goRun(func() { g.rebuildLoop(ctx) })
	api := client.New(g.a.nc)
	for ctx.Err() == nil {
		reconnected := g.a.conn.connected()
		wctx, cancel := context.WithCancel(ctx)
		if err := g.watch(wctx, api, reconnected); err != nil {
			g.a.log.Debug("watch ingresses", "err", err)
			select {
			case <-ctx.Done():
			case <-reconnected:
			case <-time.After(2 * time.Second):
			}
		}
		cancel()
	}
}

// serve listens on addr, retrying (with a growing pause) while the port
// is taken.
func (g *ingresses) serve(ctx context.Context, addr string, useTLS bool) {
	wait := time.Second
	warned := false
	for ctx.Err() == nil {
		err := g.srv.ListenAndServe(ctx, addr, useTLS, func(a net.Addr) {
			warned, wait = false, time.Second
			g.a.log.Info("ingress proxy listening", "addr", a.String(), "tls", useTLS)
			if g.a.cfg.IngressReady != nil {
				g.a.cfg.IngressReady(a.String(), useTLS)
			}
		})
		if err != nil {
			level := slog.LevelWarn
			if warned {
				level = slog.LevelDebug // said once until it works
			}
			warned = true
			g.a.log.Log(ctx, level, "ingress proxy (retrying)", "addr", addr, "tls", useTLS, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (g *ingresses) watch(ctx context.Context, api *client.Client, reconnected <-chan struct{}) error {
	ings := map[string]*manifests.Ingress{}
	items, _, err := api.List(ctx, "ingresses", "", "")
	if err != nil {
		return err
	}
	for _, o := range items {
		if ing, ok := o.(*manifests.Ingress); ok {
			ings[ing.Namespace+"/"+ing.Name] = ing
		}
	}
	ev, err := api.Watch(ctx, "ingresses", "", "")
	if err != nil {
		return err
	}
	refresh := time.NewTicker(ingressSecretRefresh)
	defer refresh.Stop()
	refetch := true
	for {
		g.mu.Lock()
		g.ings = maps.Clone(ings)
		g.mu.Unlock()
		g.fetchSecrets(ctx, api, refetch)
		g.changed()
		refetch = false
		for first := true; first || len(ev) > 0; first = false {
			select {
			case <-ctx.Done():
				return nil
			case <-reconnected:
				return nil // events may have been lost: list again
			case <-refresh.C:
				refetch = true
			case e, ok := <-ev:
				if !ok {
					return nil
				}
				ing, isIng := e.Object.(*manifests.Ingress)
				if !isIng {
					continue
				}
				key := ing.Namespace + "/" + ing.Name
				if e.Type == client.Deleted {
					delete(ings, key)
				} else {
					if old, ok := ings[key]; !ok || old.ResourceVersion != ing.ResourceVersion {
						refetch = true // a changed Ingress may name a renewed Secret
					}
					ings[key] = ing
				}
			}
		}
	}
}

// fetchSecrets reads the TLS Secrets the Ingresses name: those not held
// yet, or all of them when all is set. Secrets no Ingress names any more
// are forgotten. A Secret that cannot be read keeps its last copy.
func (g *ingresses) fetchSecrets(ctx context.Context, api *client.Client, all bool) {
	g.mu.Lock()
	names := ingress.SecretNames(slices.Collect(maps.Values(g.ings)))
	have := maps.Clone(g.secrets)
	g.mu.Unlock()
	next := map[string]*manifests.Secret{}
	for _, key := range names {
		if s, ok := have[key]; ok && !all {
			next[key] = s
			continue
		}
		ns, name, _ := strings.Cut(key, "/")
		obj, err := api.Get(ctx, "secrets", ns, name)
		if err != nil {
			g.a.log.Warn("ingress tls secret", "secret", key, "err", err)
			if s, ok := have[key]; ok {
				next[key] = s
			}
			continue
		}
		if s, ok := obj.(*manifests.Secret); ok {
			next[key] = s
		}
	}
	g.mu.Lock()
	g.secrets = next
	g.mu.Unlock()
}

// rebuildLoop builds the route table after every change, once a burst is
// over.
func (g *ingresses) rebuildLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		}
		g.rebuild()
	}
}

func (g *ingresses) rebuild() {
	g.mu.Lock()
	objs := ingress.Objects{
		Ingresses: slices.Collect(maps.Values(g.ings)),
		Secrets:   maps.Clone(g.secrets),
	}
	g.mu.Unlock()
	objs.Services, objs.Endpoints = g.a.svc.view()
	t, err := ingress.Build(objs)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != g.lastErr && msg != "" { // said once, not at every Endpoints change
		g.a.log.Warn("ingress", "err", err)
	}
	g.lastErr = msg
	g.srv.Update(t)
}

// view returns the Services and Endpoints in force (read-only objects).
func (s *services) view() (map[string]*manifests.Service, map[string]*manifests.Endpoints) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.svcs), maps.Clone(s.eps)
}
