package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/rbac"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

// RBAC users (docs/rbac.md): `edgectl user create` issues creds whose
// NATS permissions let the user publish only on its own prefix
// (auth.UserAPISubject); the API server takes the user from the subject
// and its groups from the record it kept when it issued the creds, never
// from the request, then authorizes with RBAC (rbacauthz.go).

// userIssuer is what user create needs of the authority.
type userIssuer interface {
	NewRBACUser(name string, groups []string, expires time.Time) (creds []byte, pub string, err error)
}

// MaxUserTTL bounds the lifetime of user credentials.
const MaxUserTTL = 10 * 365 * 24 * time.Hour

// userRecord is what the control plane keeps of an RBAC user, in the
// node keys bucket under userRecordKey (node keys never contain '.').
type userRecord struct {
	Groups []string  `json:"groups,omitempty"`
	Keys   []userKey `json:"keys"`
}

type userKey struct {
	PublicKey string `json:"publicKey"`
	Issued    string `json:"issued"`
	Expires   string `json:"expires,omitempty"`
	Revoked   string `json:"revoked,omitempty"`
}

func userRecordKey(name string) string { return "users." + name }

// addUserEndpoints starts the RBAC authorizer (its informers run until
// ctx ends), creates the built-in ClusterRoles that are missing and adds
// to svc the user-scoped verbs and the admin verbs user create, user
// revoke, access review and whoami.
func (s *Server) addUserEndpoints(reqCtx, ctx context.Context, svc micro.Service) error {
	if err := rbac.EnsureDefaults(ctx, s.st); err != nil {
		return err
	}
	s.users = &userAuthz{az: rbac.New(s.st), recs: map[string]*userRecord{}, synced: make(chan struct{})}
	go s.users.az.Run(ctx)
	if a := s.opts.Auth; a != nil && a.NodeKeys != nil {
		w, err := a.NodeKeys.Watch(ctx, userRecordKey("*"))
		if err != nil {
			return fmt.Errorf("watch RBAC users: %w", err)
		}
		go s.users.follow(ctx, w)
	}
	for _, v := range s.objectVerbs() {
		name := "user-" + v.verb
		if err := svc.AddEndpoint(name, s.serve(reqCtx, name, s.asUser(v.verb, v.h)), micro.WithEndpointSubject(auth.UserAPIFilter(v.verb))); err != nil {
			return fmt.Errorf("start API endpoint %s: %w", name, err)
		}
	}
	extra := []struct {
		name, subject string
		h             handler
	}{
		{"user-" + client.VerbAccessReview, auth.UserAPIFilter(client.VerbAccessReview), s.accessReview},
		{"user-" + client.VerbWhoAmI, auth.UserAPIFilter(client.VerbWhoAmI), s.whoAmI},
		{client.VerbAccessReview, messaging.APISubject(client.VerbAccessReview), s.accessReview},
		{client.VerbWhoAmI, messaging.APISubject(client.VerbWhoAmI), s.whoAmI},
		{client.VerbUserCreate, messaging.APISubject(client.VerbUserCreate), s.createUser},
		{client.VerbUserRevoke, messaging.APISubject(client.VerbUserRevoke), s.revokeUser},
	}
	for _, e := range extra {
		if err := svc.AddEndpoint(e.name, s.serve(reqCtx, e.name, e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			return fmt.Errorf("start API endpoint %s: %w", e.name, err)
		}
	}
	return nil
}

// asUser authorizes a request on a user-scoped subject with RBAC, then
// handles it as h.
func (s *Server) asUser(verb string, h handler) handler {
	return func(ctx context.Context, body []byte) (any, error) {
		user, v, ok := auth.ParseUserAPISubject(subjectOf(ctx))
		if !ok || v != verb {
			return nil, client.Errorf(client.CodeForbidden, "%s: not a user API subject: %q", verb, subjectOf(ctx))
		}
		groups, err := s.userGroups(ctx, user)
		if err != nil {
			return nil, err
		}
		at, err := s.authorizeUser(ctx, user, groups, verb, body)
		if err != nil {
			return nil, err
		}
		if s.mayOnlyCreate(user, groups, verb, at) {
			return s.applyCreateOnly(ctx, body)
		}
		return h(ctx, body)
	}
}

// userGroups returns the groups recorded for user, who must have been
// issued credentials that are not all revoked.
func (s *Server) userGroups(ctx context.Context, user string) ([]string, error) {
	a, err := s.authOn()
	if err != nil {
		return nil, err
	}
	rec, ok := s.users.cached(user)
	if !ok || rec == nil || !slices.ContainsFunc(rec.Keys, func(k userKey) bool { return k.Revoked == "" }) {
		// Not cached yet (a user just created): the bucket decides.
		if rec, _, err = readUserRecord(ctx, a, user); err != nil {
			return nil, err
		}
	}
	if rec == nil || !slices.ContainsFunc(rec.Keys, func(k userKey) bool { return k.Revoked == "" }) {
		return nil, client.Errorf(client.CodeForbidden, "user %q has no credentials issued by `edgectl user create` (or they were revoked)", user)
	}
	return rec.Groups, nil
}

// readUserRecord returns the record of user (nil when none) and its
// revision.
func readUserRecord(ctx context.Context, a *AuthOptions, user string) (*userRecord, uint64, error) {
	e, err := a.NodeKeys.Get(ctx, userRecordKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read user %s: %w", user, err)
	}
	var rec userRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, 0, fmt.Errorf("read user %s: %w", user, err)
	}
	return &rec, e.Revision(), nil
}

// writeUserRecord stores rec (compare-and-swap on rev; 0: create).
func writeUserRecord(ctx context.Context, a *AuthOptions, user string, rec *userRecord, rev uint64) error {
	raw, _ := json.Marshal(rec)
	var err error
	if rev == 0 {
		_, err = a.NodeKeys.Create(ctx, userRecordKey(user), raw)
	} else {
		_, err = a.NodeKeys.Update(ctx, userRecordKey(user), raw, rev)
	}
	return err
}

// createUser issues the credentials of an RBAC user (admin only: only
// admin credentials may publish on this subject). Creating an existing
// user adds a key and replaces its groups for all its keys.
func (s *Server) createUser(ctx context.Context, body []byte) (any, error) {
	var req client.UserCreateRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	if err := auth.ValidateUserName(req.Name); err != nil {
		return nil, client.Errorf(client.CodeInvalid, "%v", err)
	}
	var groups []string
	for _, g := range req.Groups {
		if err := auth.ValidateGroupName(g); err != nil {
			return nil, client.Errorf(client.CodeInvalid, "%v", err)
		}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	if len(groups) > auth.MaxUserGroups {
		return nil, client.Errorf(client.CodeInvalid, "groups: %d, at most %d", len(groups), auth.MaxUserGroups)
	}
	var expires time.Time
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return nil, client.Errorf(client.CodeInvalid, "ttl %q: %v", req.TTL, err)
		}
		if d <= 0 || d > MaxUserTTL {
			return nil, client.Errorf(client.CodeInvalid, "ttl %s: must be more than 0 and at most %s", d, MaxUserTTL)
		}
		expires = time.Now().Add(d)
	}
	a, err := s.authOn()
	if err != nil {
		return nil, err
	}
	issuer, ok := a.Authority.(userIssuer)
	if !ok {
		return nil, client.Errorf(client.CodeUnavailable, "this control plane's authority cannot issue RBAC users")
	}
	creds, pub, err := issuer.NewRBACUser(req.Name, groups, expires)
	if err != nil {
		return nil, client.Errorf(client.CodeInvalid, "%v", err)
	}
	k := userKey{PublicKey: pub, Issued: time.Now().UTC().Format(time.RFC3339)}
	if !expires.IsZero() {
		k.Expires = expires.UTC().Format(time.RFC3339)
	}
	for {
		rec, rev, err := readUserRecord(ctx, a, req.Name)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			rec = &userRecord{}
		}
		rec.Groups = groups
		rec.Keys = append(rec.Keys, k)
		err = writeUserRecord(ctx, a, req.Name, rec, rev)
		if err == nil {
			break
		}
		if !isWrongRevision(err) {
			return nil, fmt.Errorf("record user %s: %w", req.Name, err)
		}
	}
	s.log.Info("RBAC user credentials issued", "user", req.Name, "groups", groups, "publicKey", pub, "expires", k.Expires)
	return client.UserCreateResult{Name: req.Name, Groups: groups, PublicKey: pub, Expires: k.Expires, Creds: string(creds)}, nil
}

// revokeUser revokes every key issued to a user: the server closes its
// connections and refuses them from then on (the node revocation
// machinery: the account JWT's revocations).
func (s *Server) revokeUser(ctx context.Context, body []byte) (any, error) {
	var req client.UserRevokeRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	if err := auth.ValidateUserName(req.Name); err != nil {
		return nil, client.Errorf(client.CodeInvalid, "%v", err)
	}
	a, err := s.authOn()
	if err != nil {
		return nil, err
	}
	for {
		rec, rev, err := readUserRecord(ctx, a, req.Name)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			return nil, client.Errorf(client.CodeNotFound, "user %q has no credentials issued by `edgectl user create`: nothing to revoke", req.Name)
		}
		pubs := markRevoked(len(rec.Keys), func(i int) (string, *string) { return rec.Keys[i].PublicKey, &rec.Keys[i].Revoked })
		if len(pubs) == 0 {
			return client.UserRevokeResult{Name: req.Name, Keys: []string{}}, nil
		}
		if err := a.Authority.Revoke(pubs...); err != nil {
			return nil, fmt.Errorf("revoke user %s: %w", req.Name, err)
		}
		if err := writeUserRecord(ctx, a, req.Name, rec, rev); err != nil {
			if isWrongRevision(err) {
				continue // a create meanwhile: revoke its key too
			}
			return nil, fmt.Errorf("record revocation of user %s: %w", req.Name, err)
		}
		s.log.Info("RBAC user credentials revoked", "user", req.Name, "keys", pubs)
		return client.UserRevokeResult{Name: req.Name, Keys: pubs}, nil
	}
}

// caller is who sent a request: an RBAC user (from its subject) or the
// holder of admin credentials (only they may publish on the plain
// subjects of the verbs served here).
func (s *Server) caller(ctx context.Context) (user string, groups []string, isUser bool, err error) {
	user, _, isUser = auth.ParseUserAPISubject(subjectOf(ctx))
	if !isUser {
		return "", nil, false, nil
	}
	groups, err = s.userGroups(ctx, user)
	return user, groups, true, err
}

// whoAmI says who the API server takes the caller for.
func (s *Server) whoAmI(ctx context.Context, body []byte) (any, error) {
	user, groups, isUser, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	if !isUser {
		return client.WhoAmIResult{User: string(auth.RoleAdmin), Role: string(auth.RoleAdmin), Groups: []string{"system:masters"}}, nil
	}
	return client.WhoAmIResult{User: user, Groups: append(slices.Clone(groups), rbac.GroupAuthenticated), Role: string(auth.RoleUser)}, nil
}

// userAuthz holds the RBAC authorizer and a cache of the user records,
// fed by a watch of the node keys bucket, so that a request of an RBAC
// user reads only memory.
type userAuthz struct {
	az *rbac.Authorizer

	mu     sync.RWMutex
	recs   map[string]*userRecord
	synced chan struct{} // closed once the watch delivered every record
	once   sync.Once
}

// cached returns the record of user from the cache (nil: no such user);
// ok is false until the cache is synced.
func (u *userAuthz) cached(user string) (*userRecord, bool) {
	select {
	case <-u.synced:
	default:
		return nil, false
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.recs[user], true
}

// follow applies the watch's updates until ctx ends.
func (u *userAuthz) follow(ctx context.Context, w jetstream.KeyWatcher) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // the initial values are all in
				u.once.Do(func() { close(u.synced) })
				continue
			}
			name := strings.TrimPrefix(e.Key(), userRecordKey(""))
			u.mu.Lock()
			if e.Operation() != jetstream.KeyValuePut {
				delete(u.recs, name)
			} else {
				var rec userRecord
				if json.Unmarshal(e.Value(), &rec) == nil {
					u.recs[name] = &rec
				}
			}
			u.mu.Unlock()
		}
	}
}
