package api

import (
	"context"
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/micro"
)

type subjectKey struct{}

// withSubject records the subject a request came on.
func withSubject(ctx context.Context, subject string) context.Context {
	return context.WithValue(ctx, subjectKey{}, subject)
}

func subjectOf(ctx context.Context) string {
	s, _ := ctx.Value(subjectKey{}).(string)
	return s
}

type prefetchKey struct{}

// prefetch holds an object the authorization of a request read, so that
// the handler does not read it again.
type prefetch struct{ obj manifests.Object }

// withPrefetch makes room in ctx for an object read by the authorization.
func withPrefetch(ctx context.Context) context.Context {
	return context.WithValue(ctx, prefetchKey{}, &prefetch{})
}

// remember keeps obj, read from the store, for the handler.
func remember(ctx context.Context, obj manifests.Object) {
	if p, ok := ctx.Value(prefetchKey{}).(*prefetch); ok {
		p.obj = obj
	}
}

// prefetched returns, once, the remembered object if it is resource
// namespace/name. The caller may use it as read from the store: a write
// based on it is a compare-and-swap on its resourceVersion.
func prefetched(ctx context.Context, resource, namespace, name string) (manifests.Object, bool) {
	p, ok := ctx.Value(prefetchKey{}).(*prefetch)
	if !ok || p.obj == nil {
		return nil, false
	}
	obj := p.obj
	p.obj = nil
	k, err := manifests.KindOf(obj)
	meta := obj.GetObjectMeta()
	if err != nil || k.Resource != resource || meta.Namespace != namespace || meta.Name != name {
		return nil, false
	}
	return obj, true
}

// addSecurityEndpoints starts the service of the node-scoped verbs
// (served also without authentication: agents always use them), the join
// service and the token and revoke verbs (which answer Unavailable
// without Options.Auth).
func (s *Server) addSecurityEndpoints(ctx context.Context) (svc micro.Service, err error) {
	svc, err = micro.AddService(s.nc, micro.Config{
		Name:        messaging.SecurityServiceName,
		Version:     messaging.APIVersion,
		Description: "edge orchestrator API of nodes, join tokens and revocation",
	})
	if err != nil {
		return nil, fmt.Errorf("start API service %s: %w", messaging.SecurityServiceName, err)
	}
	defer func() {
		if err != nil {
			_ = svc.Stop()
		}
	}()
	for _, v := range s.objectVerbs() {
		name := "node-" + v.verb
		if err := svc.AddEndpoint(name, s.serve(ctx, name, s.asNode(v.verb, v.h)), micro.WithEndpointSubject(messaging.NodeAPIFilter(v.verb))); err != nil {
			return nil, fmt.Errorf("start API endpoint %s: %w", name, err)
		}
	}
	extra := []struct {
		name, subject string
		h             handler
	}{
		{messaging.VerbTokenCreate, messaging.APISubject(messaging.VerbTokenCreate), s.createToken},
		{messaging.VerbNodeRevoke, messaging.APISubject(messaging.VerbNodeRevoke), s.revokeNode},
		{"join", messaging.JoinSubject(), s.join},
	}
	for _, e := range extra {
		if err := svc.AddEndpoint(e.name, s.serve(ctx, e.name, e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			return nil, fmt.Errorf("start API endpoint %s: %w", e.name, err)
		}
	}
	return svc, nil
}

// asNode authorizes a request on a node-scoped subject for its node, then
// handles it as h.
func (s *Server) asNode(verb string, h handler) handler {
	return func(ctx context.Context, body []byte) (any, error) {
		node, v, ok := messaging.ParseNodeAPISubject(subjectOf(ctx))
		if !ok || v != verb {
			return nil, client.Errorf(client.CodeForbidden, "%s: not a node API subject: %q", verb, subjectOf(ctx))
		}
		ctx = withPrefetch(ctx)
		if err := s.authorizeNode(ctx, node, verb, body); err != nil {
			return nil, err
		}
		return h(ctx, body)
	}
}

// verbHandler is an API verb and its handler.
type verbHandler struct {
	verb string
	h    handler
}

// objectVerbs are the object verbs the node- and user-scoped subjects
// serve, each authorized first (asNode, asUser).
func (s *Server) objectVerbs() []verbHandler {
	return []verbHandler{
		{messaging.VerbGet, s.get},
		{messaging.VerbList, s.list},
		{messaging.VerbApply, s.apply},
		{messaging.VerbUpdate, s.update},
		{messaging.VerbUpdateStatus, s.updateStatus},
		{messaging.VerbDelete, s.delete},
	}
}
