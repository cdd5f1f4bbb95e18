package api

import (
	"context"
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/rbac"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// A request on a user-scoped subject comes from that RBAC user (NATS lets
// a user publish only under its own name). authorizeUser maps the API
// verb onto Kubernetes' verbs and asks RBAC:
//   - get -> get; list -> list (all namespaces: cluster-wide);
//   - apply -> create when the object does not exist, else update;
//   - update -> update (edgectl label, annotate and scale send updates);
//   - status -> update of the subresource status;
//   - delete -> delete.
//
// Writing a Role, ClusterRole or binding also needs every permission it
// grants (no escalation). A denial is Forbidden with kubectl's message.

// attrsOf returns the RBAC attributes of an API request by a user.
func (s *Server) attrsOf(ctx context.Context, verb string, body []byte) (rbac.Attributes, manifests.Object, error) {
	var at rbac.Attributes
	switch verb {
	case messaging.VerbGet:
		var req client.GetRequest
		if err := decodeBounded(body, &req); err != nil {
			return at, nil, err
		}
		k, err := resolveResource(req.Resource)
		if err != nil {
			return at, nil, err
		}
		return rbac.Attributes{Verb: "get", APIGroup: manifests.APIGroupOf(k), Resource: k.Resource, Namespace: namespaceFor(k, req.Namespace), Name: req.Name}, nil, nil
	case messaging.VerbList:
		var req client.ListRequest
		if err := decodeBounded(body, &req); err != nil {
			return at, nil, err
		}
		k, err := resolveResource(req.Resource)
		if err != nil {
			return at, nil, err
		}
		ns := ""
		if k.Namespaced {
			ns = req.Namespace
		}
		return rbac.Attributes{Verb: "list", APIGroup: manifests.APIGroupOf(k), Resource: k.Resource, Namespace: ns}, nil, nil
	case messaging.VerbDelete:
		var req client.DeleteRequest
		if err := decodeBounded(body, &req); err != nil {
			return at, nil, err
		}
		k, err := resolveResource(req.Resource)
		if err != nil {
			return at, nil, err
		}
		return rbac.Attributes{Verb: "delete", APIGroup: manifests.APIGroupOf(k), Resource: k.Resource, Namespace: namespaceFor(k, req.Namespace), Name: req.Name}, nil, nil
	case messaging.VerbApply, messaging.VerbUpdate, messaging.VerbUpdateStatus:
		var req client.UpdateRequest
		if verb == messaging.VerbApply {
			var ar client.ApplyRequest
			if err := decodeBounded(body, &ar); err != nil {
				return at, nil, err
			}
			req.Object = ar.Object
		} else if err := decodeBounded(body, &req); err != nil {
			return at, nil, err
		}
		obj, k, err := decodeObject(req.Object)
		if err != nil {
			return at, nil, err
		}
		meta := obj.GetObjectMeta()
		at = rbac.Attributes{Verb: "update", APIGroup: manifests.APIGroupOf(k), Resource: k.Resource, Namespace: namespaceFor(k, meta.Namespace), Name: meta.Name}
		switch verb {
		case messaging.VerbUpdateStatus:
			at.Subresource = "status"
		case messaging.VerbApply:
			if meta.Name == "" {
				at.Verb = "create"
				break
			}
			_, err := s.st.Get(ctx, k.Resource, at.Namespace, meta.Name)
			switch {
			case client.CodeOf(err) == client.CodeNotFound:
				at.Verb = "create"
			case err != nil:
				return at, nil, err
			}
		}
		return at, obj, nil
	}
	return at, nil, client.Errorf(client.CodeForbidden, "verb %q is not served to RBAC users", verb)
}

// authorizeUser decides a request of user (in groups) on verb and
// returns what it was checked as.
func (s *Server) authorizeUser(ctx context.Context, user string, groups []string, verb string, body []byte) (rbac.Attributes, error) {
	at, obj, err := s.attrsOf(ctx, verb, body)
	if err != nil {
		return at, err
	}
	if err := s.users.az.WaitForSync(ctx); err != nil {
		return at, client.Errorf(client.CodeUnavailable, "RBAC caches not ready: %v", err)
	}
	if d := s.users.az.Authorize(user, groups, at); !d.Allowed {
		return at, client.Errorf(client.CodeForbidden, "%s", d.Reason)
	}
	if obj != nil && at.Subresource == "" {
		return at, s.checkEscalation(user, groups, at, obj)
	}
	return at, nil
}

// mayOnlyCreate reports whether an apply checked as create (at) comes from
// a user who may not update the object: then the apply must not turn into
// an update if the object appears meanwhile (applyCreateOnly).
func (s *Server) mayOnlyCreate(user string, groups []string, verb string, at rbac.Attributes) bool {
	if verb != messaging.VerbApply || at.Verb != "create" || at.Name == "" {
		return false
	}
	upd := at
	upd.Verb = "update"
	return !s.users.az.Authorize(user, groups, upd).Allowed
}

// applyCreateOnly is apply without its retry as an update: an object
// created since the check makes it fail with AlreadyExists, as a
// Kubernetes create would.
func (s *Server) applyCreateOnly(ctx context.Context, body []byte) (any, error) {
	var req client.ApplyRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	in, k, err := decodeApply(req.Object)
	if err != nil {
		return nil, err
	}
	meta := in.GetObjectMeta()
	if k.Namespaced {
		if err := s.namespaceExists(ctx, meta.Namespace); err != nil {
			return nil, err
		}
	}
	missing := client.Errorf(client.CodeNotFound, "%s %s not found", k.Resource, qualified(meta.Namespace, meta.Name))
	result, obj, err := s.applyOnce(ctx, in, k, req.DryRun, nil, missing)
	if err != nil {
		return nil, err
	}
	return applyResult(result, obj)
}

// checkEscalation refuses a Role, ClusterRole or binding written by a
// user that grants what the user may not do itself, in the scope it
// grants it (Kubernetes' escalation check, without the bind and escalate
// verbs).
func (s *Server) checkEscalation(user string, groups []string, at rbac.Attributes, obj manifests.Object) error {
	var rules []manifests.PolicyRule
	ns := at.Namespace
	switch o := obj.(type) {
	case *manifests.Role:
		rules = o.Rules
	case *manifests.ClusterRole:
		rules = o.Rules
	case *manifests.RoleBinding, *manifests.ClusterRoleBinding:
		var ref manifests.RoleRef
		if rb, ok := o.(*manifests.RoleBinding); ok {
			ref = rb.RoleRef
		} else {
			ref = o.(*manifests.ClusterRoleBinding).RoleRef
		}
		r, ok := s.users.az.Rules(ref.Kind, ns, ref.Name)
		if !ok {
			return client.Errorf(client.CodeForbidden, "%s %q is forbidden: roleRef %s %q not found (a user may bind only an existing role)", at.Resource+"."+at.APIGroup, at.Name, ref.Kind, ref.Name)
		}
		rules = r
	default:
		return nil
	}
	for _, r := range rules {
		if missing, ok := s.covered(user, groups, ns, r); !ok {
			return client.Errorf(client.CodeForbidden, "%s.%s %q is forbidden: User %q is attempting to grant RBAC permissions not currently held: %s", at.Resource, at.APIGroup, at.Name, user, missing)
		}
	}
	return nil
}

// covered reports whether user holds every permission rule r grants in
// namespace ns ("" : cluster-wide); else it names one it lacks.
func (s *Server) covered(user string, groups []string, ns string, r manifests.PolicyRule) (string, bool) {
	names := r.ResourceNames
	if len(names) == 0 {
		names = []string{""}
	}
	for _, v := range r.Verbs {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				resource, sub, _ := strings.Cut(res, "/")
				for _, n := range names {
					at := rbac.Attributes{Verb: v, APIGroup: g, Resource: resource, Subresource: sub, Namespace: ns, Name: n}
					if !s.users.az.Authorize(user, groups, at).Allowed {
						what := fmt.Sprintf("{APIGroups:[%q], Resources:[%q], Verbs:[%q]", g, res, v)
						if n != "" {
							what += fmt.Sprintf(", ResourceNames:[%q]", n)
						}
						return what + "}", false
					}
				}
			}
		}
	}
	return "", true
}

// accessReview answers `edgectl auth can-i`: for an RBAC user about
// itself; for an admin about itself (always yes) or, with User, about
// that user (its recorded groups unless Groups are given).
func (s *Server) accessReview(ctx context.Context, body []byte) (any, error) {
	var req client.AccessReviewRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	user, groups, isUser, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case isUser:
		if (req.User != "" && req.User != user) || len(req.Groups) > 0 {
			return nil, client.Errorf(client.CodeForbidden, "User %q may not ask on behalf of another user or groups (--as needs admin credentials)", user)
		}
	case req.User == "":
		if req.List {
			return client.AccessReviewResult{Allowed: true, Rules: []string{"*.*\t[]\t[*]"}, Reason: "admin credentials: full access"}, nil
		}
		return client.AccessReviewResult{Allowed: true, Reason: "admin credentials: full access"}, nil
	default:
		user, groups = req.User, req.Groups
		if len(groups) == 0 {
			if a, err := s.authOn(); err == nil {
				rec, _, err := readUserRecord(ctx, a, user)
				if err != nil {
					return nil, err
				}
				if rec != nil {
					groups = rec.Groups
				}
			}
		}
	}
	if err := s.users.az.WaitForSync(ctx); err != nil {
		return nil, client.Errorf(client.CodeUnavailable, "RBAC caches not ready: %v", err)
	}
	if req.List {
		return client.AccessReviewResult{Rules: rbac.Describe(s.users.az.RulesFor(user, groups, req.Namespace))}, nil
	}
	if req.Verb == "" {
		return nil, client.Errorf(client.CodeInvalid, "verb: Required value")
	}
	resource, sub, _ := strings.Cut(req.Resource, "/")
	if req.Subresource != "" {
		sub = req.Subresource
	}
	at := rbac.Attributes{Verb: req.Verb, Resource: resource, Subresource: sub, Name: req.Name}
	if resource != "*" {
		k, err := resolveResource(resource)
		if err != nil {
			return nil, err
		}
		at.Resource, at.APIGroup = k.Resource, manifests.APIGroupOf(k)
		if k.Namespaced {
			at.Namespace = req.Namespace
		}
	} else {
		at.APIGroup, at.Namespace = "*", req.Namespace
	}
	d := s.users.az.Authorize(user, groups, at)
	return client.AccessReviewResult{Allowed: d.Allowed, Reason: d.Reason}, nil
}
