package auth

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// Creds is a parsed creds file.
type Creds struct {
	JWT    string
	Seed   []byte
	Claims *jwt.UserClaims
}

// ParseCreds parses the content of a creds file.
func ParseCreds(raw []byte) (*Creds, error) {
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return nil, fmt.Errorf("parse creds: %w", err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(raw)
	if err != nil {
		return nil, fmt.Errorf("parse creds: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("parse creds: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, fmt.Errorf("parse creds: user JWT: %w", err)
	}
	pub, _ := kp.PublicKey()
	if pub != uc.Subject {
		return nil, fmt.Errorf("parse creds: the seed is not the key of the JWT's user %s", uc.Subject)
	}
	return &Creds{JWT: token, Seed: seed, Claims: uc}, nil
}

// ReadCreds reads and parses a creds file.
func ReadCreds(path string) (*Creds, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read creds: %w", err)
	}
	c, err := ParseCreds(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Role is the role the creds were issued for ("" when unknown).
func (c *Creds) Role() Role {
	for _, t := range c.Claims.Tags {
		if r, ok := strings.CutPrefix(t, "role:"); ok {
			return Role(r)
		}
	}
	return ""
}

// Expires is when the JWT expires (zero: never).
func (c *Creds) Expires() time.Time {
	if c.Claims.Expires == 0 {
		return time.Time{}
	}
	return time.Unix(c.Claims.Expires, 0)
}

// InboxPrefix is the inbox prefix the user may subscribe to: the one of
// its subscribe permissions ending in ".>" whose first token starts with
// _INBOX; "" when it may subscribe anywhere (nats.go's default works).
func (c *Creds) InboxPrefix() string {
	if u := c.UserName(); u != "" {
		return UserInboxPrefix(u) // two tokens (user.go)
	}
	for _, s := range c.Claims.Permissions.Sub.Allow {
		if p, ok := strings.CutSuffix(s, ".>"); ok && strings.HasPrefix(p, "_INBOX") && !strings.Contains(p, ".") {
			return p
		}
	}
	return ""
}

// Options are the nats.go options of a connection with these creds: the
// JWT and seed, and the user's inbox prefix.
func (c *Creds) Options() []nats.Option {
	opts := []nats.Option{nats.UserJWTAndSeed(c.JWT, string(c.Seed))}
	if p := c.InboxPrefix(); p != "" {
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	return opts
}

// CredsOptions reads a creds file and returns the options to connect with
// it.
func CredsOptions(path string) ([]nats.Option, error) {
	c, err := ReadCreds(path)
	if err != nil {
		return nil, err
	}
	return c.Options(), nil
}
