package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgeorch/edgeorch/messaging/auth"
)

// TokenFileName is the token file's name in the control plane's auth
// directory.
const TokenFileName = "dashboard.token"

// minTokenLen is the shortest token accepted from a user-supplied file.
const minTokenLen = 16

// TokenPath is the default token file of a control plane's data directory.
func TokenPath(dataDir string) string { return filepath.Join(auth.Dir(dataDir), TokenFileName) }

// loadOrCreateToken reads the token in path, or creates the file (0600)
// with a random token when it does not exist.
func loadOrCreateToken(path string) (token string, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		token, err = createToken(path)
		return token, err == nil, err
	}
	if err != nil {
		return "", false, fmt.Errorf("dashboard: read token file: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", false, fmt.Errorf("dashboard: token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", false, fmt.Errorf("dashboard: token file %s may be read by group or others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	token = strings.TrimSpace(string(data))
	if len(token) < minTokenLen || strings.ContainsAny(token, " \t\r\n") {
		return "", false, fmt.Errorf("dashboard: token file %s: want one token of at least %d characters without spaces", path, minTokenLen)
	}
	return token, false, nil
}

func createToken(path string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("dashboard: generate token: %w", err)
	}
	token := hex.EncodeToString(b[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("dashboard: create token file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("dashboard: create token file: %w", err)
	}
	_, err = f.WriteString(token + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("dashboard: write token file %s: %w", path, err)
	}
	return token, nil
}

// authorized reports whether r carries the token: as a bearer token, or as
// the password of basic auth (any user name), which browsers prompt for.
func (s *Server) authorized(r *http.Request) bool {
	if s.token == "" {
		return true
	}
	var got string
	h := r.Header.Get("Authorization")
	if scheme, rest, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(rest)
	} else if _, pass, ok := r.BasicAuth(); ok {
		got = pass
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1
}

// withAuth rejects requests without the token.
func (s *Server) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="edge dashboard", charset="UTF-8"`)
			http.Error(w, "unauthorized: send the dashboard token (Authorization: Bearer TOKEN, or basic auth with the token as password; see docs/dashboard.md)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
