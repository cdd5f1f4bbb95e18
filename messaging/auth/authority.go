// Package auth is the control plane's NATS authority: an operator, a system
// account and one application account (nkeys and JWTs, persisted under
// <data-dir>/auth), the users it issues (admin, readonly, node, joiner) with
// their subject permissions, creds files, join tokens and revocation.
// docs/security.md describes it for operators.
package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/edgeorch/edgeorch/messaging"
)

// Files under the authority's directory.
const (
	operatorSeedFile = "operator.nk"
	systemSeedFile   = "system.nk"
	accountSeedFile  = "account.nk"
	signingSeedFile  = "account-signing.nk"
	operatorJWTFile  = "operator.jwt"
	systemJWTFile    = "system.jwt"
	accountJWTFile   = "account.jwt"
	// AdminCredsFile and ReadonlyCredsFile are the creds files written at
	// the first start.
	AdminCredsFile    = "admin.creds"
	ReadonlyCredsFile = "readonly.creds"
)

// Dir is the authority's directory under a control-plane data dir.
func Dir(dataDir string) string { return filepath.Join(dataDir, "auth") }

// Authority holds the keys and JWTs; it issues users and revokes them.
type Authority struct {
	dir         string
	operator    nkeys.KeyPair
	operatorJWT string
	systemJWT   string
	account     nkeys.KeyPair
	accountPub  string
	signing     nkeys.KeyPair

	mu         sync.Mutex
	accountJWT string
	push       func(accountJWT string) error
}

// Open loads the authority from dir, creating it (keys, JWTs, admin and
// readonly creds, all 0600) when dir holds none yet.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create auth dir: %w", err)
	}
	_, err := os.Stat(filepath.Join(dir, operatorSeedFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := create(dir); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("open authority: %w", err)
	}
	return load(dir)
}

// create makes a new operator, system account, account and signing key,
// then the admin and readonly creds.
func create(dir string) error {
	op, err := nkeys.CreateOperator()
	if err != nil {
		return fmt.Errorf("create operator key: %w", err)
	}
	sys, err := nkeys.CreateAccount()
	if err != nil {
		return fmt.Errorf("create system account key: %w", err)
	}
	acc, err := nkeys.CreateAccount()
	if err != nil {
		return fmt.Errorf("create account key: %w", err)
	}
	sign, err := nkeys.CreateAccount()
	if err != nil {
		return fmt.Errorf("create account signing key: %w", err)
	}
	opPub, _ := op.PublicKey()
	sysPub, _ := sys.PublicKey()
	accPub, _ := acc.PublicKey()
	signPub, _ := sign.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "edge-operator"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		return fmt.Errorf("encode operator JWT: %w", err)
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		return fmt.Errorf("encode system account JWT: %w", err)
	}
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "edge"
	ac.SigningKeys.Add(signPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	if err != nil {
		return fmt.Errorf("encode account JWT: %w", err)
	}
	files := map[string][]byte{operatorJWTFile: []byte(opJWT), systemJWTFile: []byte(sysJWT), accountJWTFile: []byte(accJWT)}
	for name, kp := range map[string]nkeys.KeyPair{operatorSeedFile: op, systemSeedFile: sys, accountSeedFile: acc, signingSeedFile: sign} {
		seed, err := kp.Seed()
		if err != nil {
			return fmt.Errorf("seed of %s: %w", name, err)
		}
		files[name] = seed
	}
	// The operator seed goes last: its presence marks a complete authority.
	for _, name := range []string{systemSeedFile, accountSeedFile, signingSeedFile, operatorJWTFile, systemJWTFile, accountJWTFile, operatorSeedFile} {
		if err := writeFile(filepath.Join(dir, name), files[name]); err != nil {
			return err
		}
	}
	a, err := load(dir)
	if err != nil {
		return err
	}
	for _, u := range []struct {
		file string
		role Role
	}{{AdminCredsFile, RoleAdmin}, {ReadonlyCredsFile, RoleReadonly}} {
		creds, err := a.NewUserCreds(string(u.role), u.role, "", time.Time{})
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, u.file), creds); err != nil {
			return err
		}
	}
	return nil
}

func load(dir string) (*Authority, error) {
	readSeed := func(name string) (nkeys.KeyPair, error) {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(raw))))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		return kp, nil
	}
	readJWT := func(name string) (string, error) {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", name, err)
		}
		return strings.TrimSpace(string(raw)), nil
	}
	a := &Authority{dir: dir}
	var err error
	if a.operator, err = readSeed(operatorSeedFile); err != nil {
		return nil, err
	}
	if a.account, err = readSeed(accountSeedFile); err != nil {
		return nil, err
	}
	if a.signing, err = readSeed(signingSeedFile); err != nil {
		return nil, err
	}
	if a.operatorJWT, err = readJWT(operatorJWTFile); err != nil {
		return nil, err
	}
	if a.systemJWT, err = readJWT(systemJWTFile); err != nil {
		return nil, err
	}
	if a.accountJWT, err = readJWT(accountJWTFile); err != nil {
		return nil, err
	}
	a.accountPub, _ = a.account.PublicKey()
	ac, err := jwt.DecodeAccountClaims(a.accountJWT)
	if err != nil || ac.Subject != a.accountPub {
		return nil, fmt.Errorf("read %s: not the JWT of account %s (%v)", accountJWTFile, a.accountPub, err)
	}
	return a, nil
}

// writeFile writes data to path (0600) atomically.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Dir is where the authority keeps its files.
func (a *Authority) Dir() string { return a.dir }

// AdminCredsPath and ReadonlyCredsPath are the creds files of the
// operators' roles.
func (a *Authority) AdminCredsPath() string    { return filepath.Join(a.dir, AdminCredsFile) }
func (a *Authority) ReadonlyCredsPath() string { return filepath.Join(a.dir, ReadonlyCredsFile) }

// AccountPublicKey is the application account's public key.
func (a *Authority) AccountPublicKey() string { return a.accountPub }

// ServerAuth is what the embedded server needs for operator mode.
func (a *Authority) ServerAuth() *messaging.OperatorAuth {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &messaging.OperatorAuth{OperatorJWT: a.operatorJWT, SystemAccountJWT: a.systemJWT, AccountJWTs: []string{a.accountJWT}}
}

// SetPusher sets how a changed account JWT reaches the server (e.g.
// messaging.UpdateAccount on the embedded server).
func (a *Authority) SetPusher(push func(accountJWT string) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.push = push
}

// IssueUser signs a user JWT for the public user key pub with the
// permissions of role; node names the node (RoleNode) or the token id
// (RoleJoiner). A zero expires never expires.
func (a *Authority) IssueUser(pub, name string, role Role, node string, expires time.Time) (string, error) {
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("issue user %s: %q is not a public user nkey", name, pub)
	}
	perms, err := PermissionsOf(role, node)
	if err != nil {
		return "", fmt.Errorf("issue user %s: %w", name, err)
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.IssuerAccount = a.accountPub
	uc.Permissions = perms
	uc.Tags.Add("role:" + string(role))
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	token, err := uc.Encode(a.signing)
	if err != nil {
		return "", fmt.Errorf("issue user %s: %w", name, err)
	}
	return token, nil
}

// NewUser makes a user key pair and issues its JWT; it returns the JWT
// and the seed.
func (a *Authority) NewUser(name string, role Role, node string, expires time.Time) (string, []byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, fmt.Errorf("create user key: %w", err)
	}
	pub, _ := kp.PublicKey()
	token, err := a.IssueUser(pub, name, role, node, expires)
	if err != nil {
		return "", nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", nil, fmt.Errorf("seed of user %s: %w", name, err)
	}
	return token, seed, nil
}

// NewUserCreds is NewUser as the content of a creds file.
func (a *Authority) NewUserCreds(name string, role Role, node string, expires time.Time) ([]byte, error) {
	token, seed, err := a.NewUser(name, role, node, expires)
	if err != nil {
		return nil, err
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, fmt.Errorf("format creds of %s: %w", name, err)
	}
	return creds, nil
}

// Revoke revokes every JWT issued until now to the user keys pubs: the
// account JWT, re-signed with the revocations, is stored and pushed to the
// server, which disconnects those users and refuses them from then on.
func (a *Authority) Revoke(pubs ...string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.operator == nil {
		return fmt.Errorf("revoke: the operator is external (--nats-url): revoke with `nsc revocations add-user` and push the account")
	}
	ac, err := jwt.DecodeAccountClaims(a.accountJWT)
	if err != nil {
		return fmt.Errorf("revoke: decode account JWT: %w", err)
	}
	now := time.Now()
	for _, pub := range pubs {
		if !nkeys.IsValidPublicUserKey(pub) {
			return fmt.Errorf("revoke: %q is not a public user nkey", pub)
		}
		ac.RevokeAt(pub, now)
	}
	token, err := ac.Encode(a.operator)
	if err != nil {
		return fmt.Errorf("revoke: encode account JWT: %w", err)
	}
	if err := writeFile(filepath.Join(a.dir, accountJWTFile), []byte(token)); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	a.accountJWT = token
	if a.push != nil {
		if err := a.push(token); err != nil {
			return fmt.Errorf("revoke: push account JWT: %w", err)
		}
	}
	return nil
}

// IsRevoked reports whether pub is revoked in the current account JWT.
func (a *Authority) IsRevoked(pub string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	ac, err := jwt.DecodeAccountClaims(a.accountJWT)
	if err != nil {
		return false
	}
	_, ok := ac.Revocations[pub]
	return ok
}
