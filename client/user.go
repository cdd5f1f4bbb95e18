package client

import (
	"context"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/edgeorch/edgeorch/messaging/auth"
)

// RBAC verbs (docs/rbac.md). VerbUserCreate and VerbUserRevoke are
// admin-only; VerbAccessReview and VerbWhoAmI are served to admins on
// messaging.APISubject and to RBAC users on their own prefix.
const (
	VerbUserCreate   = "usercreate"
	VerbUserRevoke   = "userrevoke"
	VerbAccessReview = "cani"
	VerbWhoAmI       = "whoami"
)

// UserVerbs are the API verbs served on an RBAC user's prefix
// (auth.UserAPISubject). VerbApplyBatch is not: a client falls back to
// one apply per object, each authorized.
var UserVerbs = map[string]bool{
	"apply": true, "get": true, "list": true, "delete": true, "update": true, "status": true,
	VerbAccessReview: true, VerbWhoAmI: true,
}

// UserCreateRequest asks for the credentials of an RBAC user (admin only).
type UserCreateRequest struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups,omitempty"`
	// TTL is how long the credentials last ("720h"); empty: no expiry.
	TTL string `json:"ttl,omitempty"`
}

// UserCreateResult carries the creds file content.
type UserCreateResult struct {
	Name      string   `json:"name"`
	Groups    []string `json:"groups"`
	PublicKey string   `json:"publicKey"`
	Expires   string   `json:"expires,omitempty"`
	Creds     string   `json:"creds"`
}

// UserRevokeRequest names the user whose credentials are revoked.
type UserRevokeRequest struct {
	Name string `json:"name"`
}

// UserRevokeResult lists the public keys revoked.
type UserRevokeResult struct {
	Name string   `json:"name"`
	Keys []string `json:"keys"`
}

// AccessReviewRequest asks whether the caller (or, for an admin, User in
// Groups) may do Verb on Resource[/Subresource] [Name] in Namespace ("":
// cluster-wide), or, with List, which rules apply in Namespace.
type AccessReviewRequest struct {
	User        string   `json:"user,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	Verb        string   `json:"verb,omitempty"`
	Resource    string   `json:"resource,omitempty"`
	Subresource string   `json:"subresource,omitempty"`
	Namespace   string   `json:"namespace,omitempty"`
	Name        string   `json:"name,omitempty"`
	List        bool     `json:"list,omitempty"`
}

// AccessReviewResult is the decision (or the rules, with List: one line
// each, "RESOURCES<TAB>[NAMES]<TAB>[VERBS]").
type AccessReviewResult struct {
	Allowed bool     `json:"allowed"`
	Reason  string   `json:"reason,omitempty"`
	Rules   []string `json:"rules,omitempty"`
}

// WhoAmIResult is who the API server takes the caller for.
type WhoAmIResult struct {
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
	Role   string   `json:"role"`
}

// CreateUser issues credentials for the RBAC user name in groups.
func (c *Client) CreateUser(ctx context.Context, name string, groups []string, ttl time.Duration) (UserCreateResult, error) {
	req := UserCreateRequest{Name: name, Groups: groups}
	if ttl != 0 {
		req.TTL = ttl.String()
	}
	var res UserCreateResult
	err := c.call(ctx, VerbUserCreate, req, &res)
	return res, err
}

// RevokeUser revokes every credential issued to the RBAC user name.
func (c *Client) RevokeUser(ctx context.Context, name string) (UserRevokeResult, error) {
	var res UserRevokeResult
	err := c.call(ctx, VerbUserRevoke, UserRevokeRequest{Name: name}, &res)
	return res, err
}

// AccessReview asks the API server for an RBAC decision.
func (c *Client) AccessReview(ctx context.Context, req AccessReviewRequest) (AccessReviewResult, error) {
	var res AccessReviewResult
	err := c.call(ctx, VerbAccessReview, req, &res)
	return res, err
}

// WhoAmI asks the API server who the caller is (RBAC users).
func (c *Client) WhoAmI(ctx context.Context) (WhoAmIResult, error) {
	var res WhoAmIResult
	err := c.call(ctx, VerbWhoAmI, struct{}{}, &res)
	return res, err
}

// User is the RBAC user the client acts as ("" for admin, readonly or
// node credentials).
func (c *Client) User() string { return c.user }

// userOf returns the RBAC user whose creds nc connected with ("" for
// none): requests then go on that user's prefix, which is all its
// permissions allow.
func userOf(nc *nats.Conn) string {
	if nc == nil || nc.Opts.UserJWT == nil {
		return ""
	}
	token, err := nc.Opts.UserJWT()
	if err != nil {
		return ""
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return ""
	}
	return auth.UserOfClaims(uc)
}

// userSubject is where a request of verb goes for an RBAC user; ok is
// false for a verb not served to users.
func (c *Client) userSubject(verb string) (string, bool) {
	return auth.UserAPISubject(c.user, verb), UserVerbs[verb] || verb == VerbApplyBatch
}
