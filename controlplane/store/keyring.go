package store

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// KeySize is the size of a secrets key: AES-256.
const KeySize = 32

// Keyring holds the keys that wrap the data keys of stored Secrets. It is
// read from a key file with one key per line, "id:base64(32 bytes)"; the
// first key is the current one (new writes use it), the others only
// decrypt. Blank lines and lines starting with '#' are ignored. The file is
// re-read when it changes (checked before every secret write and when a
// secret names an unknown key), so a rotation needs no restart. It is safe
// for concurrent use.
type Keyring struct {
	path     string
	disabled error // set by DisabledKeyring

	mu      sync.Mutex
	keys    map[string][]byte
	current string
	stamp   fileStamp
}

// fileStamp identifies a version of the key file.
type fileStamp struct {
	mod  time.Time
	size int64
}

// OpenKeyring loads the key file at path, first creating it (mode 0600,
// one random key) when it does not exist.
func OpenKeyring(path string) (*Keyring, error) {
	if path == "" {
		return nil, errors.New("secrets key file: no path given")
	}
	if _, err := CreateKeyFile(path); err != nil {
		return nil, err
	}
	return LoadKeyring(path)
}

// LoadKeyring loads an existing key file.
func LoadKeyring(path string) (*Keyring, error) {
	k := &Keyring{path: path}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

// CreateKeyFile writes a key file with one random key unless path exists.
// It reports whether it created the file. Several processes may race: the
// file appears whole (written aside, then linked) and only one wins.
func CreateKeyFile(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("secrets key file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("secrets key file %s: %w", path, err)
	}
	_, line, err := NewKeyLine()
	if err != nil {
		return false, err
	}
	content := "# edge-controlplane secrets keys: one \"id:base64(32 bytes)\" per line;\n" +
		"# the first key encrypts, the others only decrypt. See docs/security.md.\n" + line + "\n"
	tmp, err := os.CreateTemp(dir, ".secrets-key-*") // mode 0600
	if err != nil {
		return false, fmt.Errorf("secrets key file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(content)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("secrets key file %s: write: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil // another process created it first
		}
		return false, fmt.Errorf("secrets key file %s: %w", path, err)
	}
	return true, nil
}

// NewKeyLine returns a fresh random key as a key file line, and its id
// (k<UTC time>, e.g. k20261123T173455Z).
func NewKeyLine() (id, line string, err error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", "", fmt.Errorf("generate secrets key: %w", err)
	}
	id = "k" + time.Now().UTC().Format("20060102T150405Z")
	return id, id + ":" + base64.StdEncoding.EncodeToString(key), nil
}

// DisabledKeyring is a keyring without keys: every secret write or
// encrypted read fails with reason (e.g. that no key file is configured),
// so that nothing is ever stored in clear.
func DisabledKeyring(reason string) *Keyring {
	return &Keyring{disabled: errors.New(reason)}
}

// Path is the key file.
func (k *Keyring) Path() string { return k.path }

// CurrentID is the id of the key new writes use (as last loaded).
func (k *Keyring) CurrentID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current
}

// Refresh re-reads the key file if it changed since it was loaded and
// reports whether it did. On error the keys loaded before stay in use.
func (k *Keyring) Refresh() (bool, error) {
	if k.disabled != nil {
		return false, k.disabled
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := os.Stat(k.path)
	if err != nil {
		return false, fmt.Errorf("secrets key file %s: %w", k.path, err)
	}
	if st.ModTime().Equal(k.stamp.mod) && st.Size() == k.stamp.size {
		return false, nil
	}
	return true, k.loadLocked()
}

// currentKey returns the current key, re-reading the file if it changed.
// A file that cannot be read now (half written by an editor, or wrong) leaves
// the keys loaded before in use: KeepSecretsEncrypted reports the error.
func (k *Keyring) currentKey() (string, []byte, error) {
	_, err := k.Refresh()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.current == "" {
		if err == nil {
			err = errors.New("no key loaded")
		}
		return "", nil, err
	}
	return k.current, k.keys[k.current], nil
}

// key returns the key called id, re-reading the file once if it is unknown.
func (k *Keyring) key(id string) ([]byte, error) {
	k.mu.Lock()
	key, ok := k.keys[id]
	k.mu.Unlock()
	if ok {
		return key, nil
	}
	if _, err := k.Refresh(); err != nil {
		return nil, fmt.Errorf("secret encrypted with key %q: %w", id, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.keys[id]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("secret encrypted with key %q, which is not in the secrets key file %s", id, k.path)
}

func (k *Keyring) load() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.loadLocked()
}

func (k *Keyring) loadLocked() error {
	st, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("secrets key file %s: %w", k.path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("secrets key file %s: mode %#o lets other users read it; chmod 600 it", k.path, st.Mode().Perm())
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("secrets key file %s: %w", k.path, err)
	}
	keys, current, err := ParseKeyFile(data)
	if err != nil {
		return fmt.Errorf("secrets key file %s: %w", k.path, err)
	}
	k.keys, k.current = keys, current
	k.stamp = fileStamp{mod: st.ModTime(), size: st.Size()}
	return nil
}

// ParseKeyFile reads the keys of a key file and the id of the current
// (first) one.
func ParseKeyFile(data []byte) (map[string][]byte, string, error) {
	keys := map[string][]byte{}
	current := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, enc, ok := strings.Cut(line, ":")
		if !ok {
			return nil, "", fmt.Errorf("line %d: want id:base64-key", n)
		}
		if !validKeyID(id) {
			return nil, "", fmt.Errorf("line %d: key id %q: want 1-64 letters, digits, '.', '_' or '-'", n, id)
		}
		if _, dup := keys[id]; dup {
			return nil, "", fmt.Errorf("line %d: key id %q appears twice", n, id)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if err != nil {
			return nil, "", fmt.Errorf("line %d: key %q: not base64: %v", n, id, err)
		}
		if len(key) != KeySize {
			return nil, "", fmt.Errorf("line %d: key %q: %d bytes, want %d (AES-256)", n, id, len(key), KeySize)
		}
		keys[id] = key
		if current == "" {
			current = id
		}
	}
	if err := sc.Err(); err != nil {
		return nil, "", err
	}
	if current == "" {
		return nil, "", errors.New("no key in the file")
	}
	return keys, current, nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
