package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
	"github.com/nats-io/nats.go/jetstream"
)

// Authority issues and revokes credentials (*auth.Authority).
type Authority interface {
	NewJoinToken(ttl time.Duration) (auth.JoinToken, time.Time, error)
	IssueUser(pub, name string, role auth.Role, node string, expires time.Time) (string, error)
	Revoke(pubs ...string) error
}

// AuthOptions are what the join service and the token and revoke verbs
// need.
type AuthOptions struct {
	Authority Authority
	// JoinTokens and NodeKeys are messaging.Buckets' buckets of the
	// same names.
	JoinTokens jetstream.KeyValue
	NodeKeys   jetstream.KeyValue
}

// DefaultTokenTTL is how long a join token lasts when no TTL is asked.
const DefaultTokenTTL = time.Hour

// tokenRecord is what the control plane keeps of a join token.
type tokenRecord struct {
	Hash    string `json:"hash"`
	Expires string `json:"expires"`
	Node    string `json:"node,omitempty"`
	UsedBy  string `json:"usedBy,omitempty"`
	UsedAt  string `json:"usedAt,omitempty"`
}

// nodeKeys lists the user keys issued to a node.
type nodeKeys struct {
	Keys []nodeKey `json:"keys"`
}

type nodeKey struct {
	PublicKey string `json:"publicKey"`
	Issued    string `json:"issued"`
	Token     string `json:"token,omitempty"`
	Revoked   string `json:"revoked,omitempty"`
}

func (s *Server) authOn() (*AuthOptions, error) {
	a := s.opts.Auth
	if a == nil || a.Authority == nil || a.JoinTokens == nil || a.NodeKeys == nil {
		return nil, client.Errorf(client.CodeUnavailable, "authentication is off (the control plane runs with --dev, or on an external NATS): no join tokens, no node credentials")
	}
	return a, nil
}

// createToken makes a single-use join token; only its secret's hash is
// stored, with its expiry.
func (s *Server) createToken(ctx context.Context, body []byte) (any, error) {
	var req client.TokenCreateRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	ttl := DefaultTokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return nil, client.Errorf(client.CodeInvalid, "ttl %q: %v", req.TTL, err)
		}
		ttl = d
	}
	if ttl <= 0 || ttl > messaging.MaxJoinTokenTTL {
		return nil, client.Errorf(client.CodeInvalid, "ttl %s: must be more than 0 and at most %s", ttl, messaging.MaxJoinTokenTTL)
	}
	if req.Node != "" {
		if err := manifests.ValidateDNSSubdomain(req.Node); err != nil {
			return nil, client.Errorf(client.CodeInvalid, "node %q: %v", req.Node, err)
		}
	}
	a, err := s.authOn()
	if err != nil {
		return nil, err
	}
	tok, expires, err := a.Authority.NewJoinToken(ttl)
	if err != nil {
		return nil, err
	}
	rec, _ := json.Marshal(tokenRecord{Hash: auth.HashSecret(tok.Secret), Expires: expires.UTC().Format(time.RFC3339), Node: req.Node})
	if _, err := a.JoinTokens.Create(ctx, messaging.TokenKey(tok.ID), rec); err != nil {
		return nil, fmt.Errorf("store join token %s: %w", tok.ID, err)
	}
	s.log.Info("join token created", "id", tok.ID, "expires", expires.UTC().Format(time.RFC3339), "node", req.Node)
	return client.TokenCreateResult{ID: tok.ID, Token: tok.Encode(), Expires: expires.UTC().Format(time.RFC3339)}, nil
}

// revokeNode revokes every key issued to a node: the server closes its
// connections and refuses it from then on.
func (s *Server) revokeNode(ctx context.Context, body []byte) (any, error) {
	var req client.RevokeRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	if err := requireName(req.Node); err != nil {
		return nil, err
	}
	a, err := s.authOn()
	if err != nil {
		return nil, err
	}
	key := messaging.NodeKeysKey(req.Node)
	for {
		e, err := a.NodeKeys.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, client.Errorf(client.CodeNotFound, "node %q has no credentials issued by a join token: nothing to revoke", req.Node)
		}
		if err != nil {
			return nil, fmt.Errorf("read keys of node %s: %w", req.Node, err)
		}
		var rec nodeKeys
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return nil, fmt.Errorf("read keys of node %s: %w", req.Node, err)
		}
		pubs := markRevoked(len(rec.Keys), func(i int) (string, *string) { return rec.Keys[i].PublicKey, &rec.Keys[i].Revoked })
		if len(pubs) == 0 {
			return client.RevokeResult{Node: req.Node, Keys: []string{}}, nil
		}
		if err := a.Authority.Revoke(pubs...); err != nil {
			return nil, fmt.Errorf("revoke node %s: %w", req.Node, err)
		}
		raw, _ := json.Marshal(rec)
		if _, err := a.NodeKeys.Update(ctx, key, raw, e.Revision()); err != nil {
			if isWrongRevision(err) {
				continue // a join meanwhile: revoke its key too
			}
			return nil, fmt.Errorf("record revocation of node %s: %w", req.Node, err)
		}
		s.log.Info("node credentials revoked", "node", req.Node, "keys", pubs)
		return client.RevokeResult{Node: req.Node, Keys: pubs}, nil
	}
}

// isWrongRevision reports a failed compare-and-swap of a KV write.
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// markRevoked marks as revoked now every one of n issued keys not revoked
// yet (key returns its public key and its revocation time) and returns
// their public keys.
func markRevoked(n int, key func(i int) (pub string, revoked *string)) []string {
	var pubs []string
	now := time.Now().UTC().Format(time.RFC3339)
	for i := range n {
		if pub, revoked := key(i); *revoked == "" {
			pubs = append(pubs, pub)
			*revoked = now
		}
	}
	return pubs
}
