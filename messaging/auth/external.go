package auth

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
)

// OpenExternal is the authority of a control plane on an external NATS
// whose operator is someone else's: it holds only the application
// account's signing seed (signingSeedFile) and so can issue users (join
// tokens, node credentials) but not revoke them (that re-signs the account
// JWT, with the operator's key: `nsc revocations add-user`). The account
// is the one that issued the control plane's own creds (credsFile).
func OpenExternal(signingSeedFile, credsFile string) (*Authority, error) {
	raw, err := os.ReadFile(signingSeedFile)
	if err != nil {
		return nil, fmt.Errorf("account signing key: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(raw))))
	if err != nil {
		return nil, fmt.Errorf("account signing key %s: %w", signingSeedFile, err)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("account signing key %s: not an account key", signingSeedFile)
	}
	c, err := ReadCreds(credsFile)
	if err != nil {
		return nil, err
	}
	account := c.Claims.IssuerAccount
	if account == "" {
		account = c.Claims.Issuer
	}
	if !nkeys.IsValidPublicAccountKey(account) {
		return nil, fmt.Errorf("creds %s: no issuing account", credsFile)
	}
	return &Authority{signing: kp, accountPub: account}, nil
}
