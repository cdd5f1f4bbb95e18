package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// TokenCreateRequest asks for a single-use join token (admin only).
type TokenCreateRequest struct {
	// TTL is how long the token may be used ("1h"); 1h when empty.
	TTL string `json:"ttl,omitempty"`
	// Node, when set, is the only node name the token may join as.
	Node string `json:"node,omitempty"`
}

// TokenCreateResult is the token string and when it expires.
type TokenCreateResult struct {
	ID      string `json:"id"`
	Token   string `json:"token"`
	Expires string `json:"expires"`
}

// JoinRequest is what a device sends on messaging.JoinSubject with the
// token's id and secret: its node name and the public key of the user
// key pair it made (the seed never leaves the device).
type JoinRequest struct {
	TokenID   string `json:"tokenId"`
	Secret    string `json:"secret"`
	Node      string `json:"node"`
	PublicKey string `json:"publicKey"`
}

// JoinResult carries the node's user JWT.
type JoinResult struct {
	JWT string `json:"jwt"`
}

// RevokeRequest names the node whose credentials are revoked (admin only).
type RevokeRequest struct {
	Node string `json:"node"`
}

// RevokeResult lists the public keys revoked.
type RevokeResult struct {
	Node string   `json:"node"`
	Keys []string `json:"keys"`
}

// CreateJoinToken creates a join token valid for ttl (0: the server's
// default), usable only as node when node is set.
func (c *Client) CreateJoinToken(ctx context.Context, ttl time.Duration, node string) (TokenCreateResult, error) {
	req := TokenCreateRequest{Node: node}
	if ttl != 0 {
		req.TTL = ttl.String()
	}
	var res TokenCreateResult
	err := c.call(ctx, messaging.VerbTokenCreate, req, &res)
	return res, err
}

// RevokeNode revokes every credential issued to node.
func (c *Client) RevokeNode(ctx context.Context, node string) (RevokeResult, error) {
	var res RevokeResult
	err := c.call(ctx, messaging.VerbNodeRevoke, RevokeRequest{Node: node}, &res)
	return res, err
}

// Join sends req on the join subject (over a connection made with the
// token's joiner creds) and returns the node's user JWT.
func (c *Client) Join(ctx context.Context, req JoinRequest) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("join: encode request: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	msg, err := c.nc.RequestWithContext(ctx, messaging.JoinSubject(), body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return "", Errorf(CodeUnavailable, "join: the control plane does not serve joins (no responders on %s; is it running with --dev?)", messaging.JoinSubject())
		}
		return "", Errorf(CodeUnavailable, "join: %v", err)
	}
	var resp Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return "", fmt.Errorf("join: decode reply: %w", err)
	}
	if resp.Error != nil {
		return "", resp.Error
	}
	var res JoinResult
	if err := json.Unmarshal(resp.Result, &res); err != nil {
		return "", fmt.Errorf("join: decode result: %w", err)
	}
	return res.JWT, nil
}
