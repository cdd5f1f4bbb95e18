package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
)

// tokenPrefix starts every join token string (versioned).
const tokenPrefix = "edgejoin1."

// JoinToken is what a join token string carries: the joiner's creds (a
// user that may only ask to join, expiring with the token), the token id
// and its secret. The control plane keeps only the secret's hash.
type JoinToken struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	JWT    string `json:"jwt"`
	Seed   string `json:"seed"`
}

// Encode returns the token string.
func (t JoinToken) Encode() string {
	raw, _ := json.Marshal(t)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
}

// ParseJoinToken decodes a token string.
func ParseJoinToken(s string) (JoinToken, error) {
	var t JoinToken
	body, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok {
		return t, fmt.Errorf("join token: does not start with %q (was it copied whole?)", tokenPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return t, fmt.Errorf("join token: %w (was it copied whole?)", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, fmt.Errorf("join token: %w", err)
	}
	if t.ID == "" || t.Secret == "" || t.JWT == "" || t.Seed == "" {
		return t, fmt.Errorf("join token: id, secret, jwt and seed are required")
	}
	return t, nil
}

// Creds returns the joiner's creds carried by the token.
func (t JoinToken) Creds() (*Creds, error) {
	raw, err := jwt.FormatUserConfig(t.JWT, []byte(t.Seed))
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	c, err := ParseCreds(raw)
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	return c, nil
}

// HashSecret is what the control plane stores of a token's secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches compares a secret with a stored hash in constant time.
func SecretMatches(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(hash)) == 1
}

// NewJoinToken makes a token valid for ttl: a new id and secret, and a
// joiner user that expires with it.
func (a *Authority) NewJoinToken(ttl time.Duration) (JoinToken, time.Time, error) {
	var t JoinToken
	var id [8]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return t, time.Time{}, fmt.Errorf("new join token: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return t, time.Time{}, fmt.Errorf("new join token: %w", err)
	}
	t.ID = hex.EncodeToString(id[:])
	t.Secret = base64.RawURLEncoding.EncodeToString(secret[:])
	expires := time.Now().Add(ttl)
	token, seed, err := a.NewUser("join-"+t.ID, RoleJoiner, t.ID, expires)
	if err != nil {
		return t, time.Time{}, err
	}
	t.JWT, t.Seed = token, string(seed)
	return t, expires, nil
}
