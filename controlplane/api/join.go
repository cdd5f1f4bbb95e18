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
	"github.com/nats-io/nkeys"
)

// join checks a join token (known, secret right, unused, not expired),
// marks it used by compare-and-swap (of two joins with one token only one
// wins), records the node's public key and returns its user JWT.
func (s *Server) join(ctx context.Context, body []byte) (any, error) {
	var req client.JoinRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	if err := manifests.ValidateDNSSubdomain(req.Node); err != nil {
		return nil, client.Errorf(client.CodeInvalid, "node %q: %v", req.Node, err)
	}
	if !nkeys.IsValidPublicUserKey(req.PublicKey) {
		return nil, client.Errorf(client.CodeInvalid, "publicKey %q: not a public user nkey", req.PublicKey)
	}
	if req.TokenID == "" || req.Secret == "" {
		return nil, client.Errorf(client.CodeInvalid, "tokenId and secret: Required value")
	}
	a, err := s.authOn()
	if err != nil {
		return nil, err
	}
	key := messaging.TokenKey(req.TokenID)
	e, err := a.JoinTokens.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, client.Errorf(client.CodeForbidden, "join token %s is unknown (expired long ago, or never created)", req.TokenID)
	}
	if err != nil {
		return nil, fmt.Errorf("read join token %s: %w", req.TokenID, err)
	}
	var rec tokenRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("read join token %s: %w", req.TokenID, err)
	}
	if !auth.SecretMatches(req.Secret, rec.Hash) {
		return nil, client.Errorf(client.CodeForbidden, "join token %s: wrong secret", req.TokenID)
	}
	if rec.UsedBy != "" {
		return nil, client.Errorf(client.CodeForbidden, "join token %s was already used (by node %q at %s); create a new one with `edgectl token create`", req.TokenID, rec.UsedBy, rec.UsedAt)
	}
	expires, err := time.Parse(time.RFC3339, rec.Expires)
	if err != nil {
		return nil, fmt.Errorf("read join token %s: expires: %w", req.TokenID, err)
	}
	now := time.Now()
	if !now.Before(expires) {
		return nil, client.Errorf(client.CodeForbidden, "join token %s expired at %s; create a new one with `edgectl token create`", req.TokenID, rec.Expires)
	}
	if rec.Node != "" && rec.Node != req.Node {
		return nil, client.Errorf(client.CodeForbidden, "join token %s is for node %q, not %q", req.TokenID, rec.Node, req.Node)
	}
	rec.UsedBy, rec.UsedAt = req.Node, now.UTC().Format(time.RFC3339)
	raw, _ := json.Marshal(rec)
	if _, err := a.JoinTokens.Update(ctx, key, raw, e.Revision()); err != nil {
		if isWrongRevision(err) {
			return nil, client.Errorf(client.CodeForbidden, "join token %s was already used (by another join at the same time)", req.TokenID)
		}
		return nil, fmt.Errorf("mark join token %s used: %w", req.TokenID, err)
	}
	if err := s.recordNodeKey(ctx, a, req.Node, nodeKey{PublicKey: req.PublicKey, Issued: rec.UsedAt, Token: req.TokenID}); err != nil {
		return nil, err
	}
	token, err := a.Authority.IssueUser(req.PublicKey, req.Node, auth.RoleNode, req.Node, time.Time{})
	if err != nil {
		return nil, err
	}
	s.log.Info("node joined", "node", req.Node, "token", req.TokenID, "publicKey", req.PublicKey)
	return client.JoinResult{JWT: token}, nil
}

// recordNodeKey appends k to the keys issued to node (compare-and-swap).
func (s *Server) recordNodeKey(ctx context.Context, a *AuthOptions, node string, k nodeKey) error {
	key := messaging.NodeKeysKey(node)
	for {
		var rec nodeKeys
		var rev uint64
		e, err := a.NodeKeys.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read keys of node %s: %w", node, err)
		default:
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return fmt.Errorf("read keys of node %s: %w", node, err)
			}
			rev = e.Revision()
		}
		rec.Keys = append(rec.Keys, k)
		raw, _ := json.Marshal(rec)
		if rev == 0 {
			_, err = a.NodeKeys.Create(ctx, key, raw)
		} else {
			_, err = a.NodeKeys.Update(ctx, key, raw, rev)
		}
		if err == nil {
			return nil
		}
		if !isWrongRevision(err) {
			return fmt.Errorf("record key of node %s: %w", node, err)
		}
	}
}
