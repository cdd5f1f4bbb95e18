package state

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyFileName is the node-local key that encrypts the secrets kept in the
// database; it lives beside the database file, mode 0600, and is created
// on first open. Configmaps stay in clear.
const KeyFileName = "state.key"

// sealedPrefix starts a sealed ref: the ref is then a JSON string
// "v1:" + base64(nonce || AES-256-GCM(key, secret JSON)), with the pod key
// and ref key as additional data. A plain ref is a JSON object.
const sealedPrefix = "v1:"

func isSecretRef(refKey string) bool { return strings.HasPrefix(refKey, "secrets/") }

func isSealed(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '"'
}

func refAAD(podKey, refKey string) []byte {
	return []byte("edge-agent-state:" + podKey + ":" + refKey)
}

// loadKey reads the key file, creating it with a random key when missing.
func loadKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKey(path); err != nil {
			return nil, err
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("state key %s: %w", path, err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("state key %s: not base64: %v", path, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("state key %s: %d bytes, want 32", path, len(key))
	}
	return key, nil
}

// createKey writes a new random key file; it appears whole or not at all.
func createKey(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("state key %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-key-*") // mode 0600
	if err != nil {
		return fmt.Errorf("state key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path)
		if errors.Is(err, fs.ErrExist) {
			err = nil // created meanwhile
		}
	}
	if err != nil {
		return fmt.Errorf("state key %s: %w", path, err)
	}
	return nil
}

func (d *DB) gcm() (cipher.AEAD, error) {
	block, err := aes.NewCipher(d.key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealRefs returns p with its secret refs sealed (p itself when it has
// none in clear).
func (d *DB) sealRefs(p *Pod) (*Pod, error) {
	clear := false
	for k, v := range p.Refs {
		clear = clear || (isSecretRef(k) && !isSealed(v))
	}
	if !clear {
		return p, nil
	}
	gcm, err := d.gcm()
	if err != nil {
		return nil, err
	}
	cp := *p
	cp.Refs = make(map[string]json.RawMessage, len(p.Refs))
	for k, v := range p.Refs {
		if isSecretRef(k) && !isSealed(v) {
			nonce := make([]byte, gcm.NonceSize())
			if _, err := rand.Read(nonce); err != nil {
				return nil, err
			}
			ct := gcm.Seal(nonce, nonce, v, refAAD(p.Key(), k))
			if v, err = json.Marshal(sealedPrefix + base64.StdEncoding.EncodeToString(ct)); err != nil {
				return nil, err
			}
		}
		cp.Refs[k] = v
	}
	return &cp, nil
}

// openRefs decrypts p's sealed refs in place. A ref that cannot be
// decrypted (the key file was lost or replaced) is dropped: the agent
// fetches the secret again from the control plane.
func (d *DB) openRefs(p *Pod) {
	var gcm cipher.AEAD
	for k, v := range p.Refs {
		if !isSealed(v) {
			continue
		}
		plain, err := func() ([]byte, error) {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, err
			}
			enc, ok := strings.CutPrefix(s, sealedPrefix)
			if !ok {
				return nil, errors.New("unknown format")
			}
			ct, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				return nil, err
			}
			if gcm == nil {
				if gcm, err = d.gcm(); err != nil {
					return nil, err
				}
			}
			if len(ct) < gcm.NonceSize() {
				return nil, errors.New("too short")
			}
			return gcm.Open(nil, ct[:gcm.NonceSize()], ct[gcm.NonceSize():], refAAD(p.Key(), k))
		}()
		if err != nil || !json.Valid(plain) {
			delete(p.Refs, k)
			continue
		}
		p.Refs[k] = plain
	}
}
