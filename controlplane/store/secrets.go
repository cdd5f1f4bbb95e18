package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// Envelope encryption of Secrets. With a Keyring, a stored Secret keeps its
// apiVersion, kind, metadata, type and immutable in clear; its data and
// stringData are replaced by an "encrypted" field:
//
//	{"alg":"AES-256-GCM","keyID":"k1","wrappedKey":"<b64>","ciphertext":"<b64>"}
//
// ciphertext is nonce || AES-256-GCM(data key, {"data":..,"stringData":..})
// with the object key as additional data (a ciphertext cannot be moved to
// another secret); wrappedKey is nonce || AES-256-GCM(key keyID, data key).
// Every write draws a fresh data key. Reads decrypt transparently.

const (
	secretsResource = "secrets"
	encryptedField  = "encrypted"
	algAES256GCM    = "AES-256-GCM"
)

// sealedSecret is the "encrypted" field of a stored Secret.
type sealedSecret struct {
	Alg        string `json:"alg"`
	KeyID      string `json:"keyID"`
	WrappedKey []byte `json:"wrappedKey"`
	Ciphertext []byte `json:"ciphertext"`
}

// Option configures a Store.
type Option func(*Store)

// WithKeyring encrypts Secrets at rest with the keys of kr. Without it,
// Secrets are stored in clear (and encrypted ones cannot be read).
func WithKeyring(kr *Keyring) Option { return func(s *Store) { s.kr = kr } }

func isSecretKey(key string) bool { return strings.HasPrefix(key, secretsResource+".") }

// seal turns the stored form of a Secret (JSON, clear) into its encrypted
// stored form.
func (s *Store) seal(key string, clear []byte) ([]byte, error) {
	if s.kr == nil || !isSecretKey(key) {
		return clear, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(clear, &m); err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", key, err)
	}
	payload := map[string]json.RawMessage{}
	for _, f := range []string{"data", "stringData"} {
		if v, ok := m[f]; ok {
			payload[f] = v
			delete(m, f)
		}
	}
	plain, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", key, err)
	}
	id, kek, err := s.kr.currentKey()
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", key, err)
	}
	dek := make([]byte, KeySize)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("encrypt %s: data key: %w", key, err)
	}
	sealed := sealedSecret{Alg: algAES256GCM, KeyID: id}
	if sealed.WrappedKey, err = gcmSeal(kek, dek, wrapAAD(id)); err != nil {
		return nil, fmt.Errorf("encrypt %s: wrap data key: %w", key, err)
	}
	if sealed.Ciphertext, err = gcmSeal(dek, plain, dataAAD(key)); err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", key, err)
	}
	enc, err := json.Marshal(sealed)
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", key, err)
	}
	m[encryptedField] = enc
	return json.Marshal(m)
}

// open returns the clear stored form of a value and the id of the key that
// encrypted it ("" when it was stored in clear).
func (s *Store) open(key string, value []byte) ([]byte, string, error) {
	if !isSecretKey(key) {
		return value, "", nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(value, &m); err != nil {
		return value, "", nil // not an object: decoding reports it
	}
	raw, ok := m[encryptedField]
	if !ok {
		return value, "", nil // stored in clear (before encryption was on)
	}
	var sealed sealedSecret
	if err := json.Unmarshal(raw, &sealed); err != nil {
		return nil, "", fmt.Errorf("decrypt %s: %s: %w", key, encryptedField, err)
	}
	if sealed.Alg != algAES256GCM {
		return nil, sealed.KeyID, fmt.Errorf("decrypt %s: unknown algorithm %q", key, sealed.Alg)
	}
	if s.kr == nil {
		return nil, sealed.KeyID, fmt.Errorf("decrypt %s: encrypted with key %q but no secrets key file is configured", key, sealed.KeyID)
	}
	kek, err := s.kr.key(sealed.KeyID)
	if err != nil {
		return nil, sealed.KeyID, fmt.Errorf("decrypt %s: %w", key, err)
	}
	dek, err := gcmOpen(kek, sealed.WrappedKey, wrapAAD(sealed.KeyID))
	if err != nil {
		return nil, sealed.KeyID, fmt.Errorf("decrypt %s: unwrap data key with key %q: %w (wrong key under that id, or altered data)", key, sealed.KeyID, err)
	}
	plain, err := gcmOpen(dek, sealed.Ciphertext, dataAAD(key))
	if err != nil {
		return nil, sealed.KeyID, fmt.Errorf("decrypt %s: %w (altered data)", key, err)
	}
	var payload map[string]json.RawMessage
	if err := json.Unmarshal(plain, &payload); err != nil {
		return nil, sealed.KeyID, fmt.Errorf("decrypt %s: %w", key, err)
	}
	delete(m, encryptedField)
	for f, v := range payload {
		m[f] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, sealed.KeyID, fmt.Errorf("decrypt %s: %w", key, err)
	}
	return out, sealed.KeyID, nil
}

// clearPart is a stored Secret without its encrypted data, for a delete
// that must go on when the key is gone.
func clearPart(value []byte) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(value, &m); err != nil {
		return value
	}
	delete(m, encryptedField)
	out, err := json.Marshal(m)
	if err != nil {
		return value
	}
	return out
}

func wrapAAD(keyID string) []byte { return []byte("edge-secret-data-key:" + keyID) }
func dataAAD(key string) []byte   { return []byte("edge-secret:" + key) }

func gcmSeal(key, plain, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(plain)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plain, aad), nil
}

func gcmOpen(key, sealed, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize()+gcm.Overhead() {
		return nil, errors.New("ciphertext too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], aad)
}

// ReencryptResult counts what ReencryptSecrets did.
type ReencryptResult struct {
	// KeyID is the current key every secret is now encrypted with.
	KeyID string
	// Rewritten secrets were stored in clear or with another key.
	Rewritten int
	// Current secrets already used KeyID.
	Current int
}

// reencryptAttempts bounds the retries of one secret that concurrent
// writers keep changing.
const reencryptAttempts = 10

// ReencryptSecrets rewrites every Secret not encrypted with the current key
// (or stored in clear) with the current key, by compare-and-swap on its
// revision: a concurrent write wins and is then checked again. The
// objects do not change (generation and content are kept); their
// resourceVersion does. It re-reads the key file first.
func (s *Store) ReencryptSecrets(ctx context.Context) (ReencryptResult, error) {
	var res ReencryptResult
	if s.kr == nil {
		return res, errors.New("reencrypt secrets: no secrets key file is configured")
	}
	if _, err := s.kr.Refresh(); err != nil {
		return res, fmt.Errorf("reencrypt secrets: %w", err)
	}
	res.KeyID = s.kr.CurrentID()
	keys, err := s.secretKeys(ctx)
	if err != nil {
		return res, fmt.Errorf("reencrypt secrets: %w", err)
	}
	for _, key := range keys {
		rewritten, err := s.reencrypt(ctx, key, res.KeyID)
		if err != nil {
			return res, fmt.Errorf("reencrypt secrets: %w", err)
		}
		if rewritten {
			res.Rewritten++
		} else {
			res.Current++
		}
	}
	return res, nil
}

// secretKeys lists the keys of the stored secrets.
func (s *Store) secretKeys(ctx context.Context) ([]string, error) {
	w, err := s.kv.WatchFiltered(ctx, []string{messaging.ObjectFilter(secretsResource, "*")}, jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	defer w.Stop()
	var keys []string
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("list: watcher stopped")
			}
			if e == nil {
				return keys, nil
			}
			if e.Operation() == jetstream.KeyValuePut {
				keys = append(keys, e.Key())
			}
		}
	}
}

// reencrypt rewrites one secret unless it uses keyID or is gone.
func (s *Store) reencrypt(ctx context.Context, key, keyID string) (bool, error) {
	for attempt := 0; ; attempt++ {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read %s: %w", key, err)
		}
		clear, usedKey, err := s.open(key, e.Value())
		if err != nil {
			return false, err
		}
		if usedKey == keyID {
			return false, nil
		}
		data, err := s.seal(key, clear)
		if err != nil {
			return false, err
		}
		_, err = s.kv.Update(ctx, key, data, e.Revision())
		if err == nil {
			return true, nil
		}
		if !isWrongLastSequence(err) {
			return false, fmt.Errorf("write %s: %w", key, err)
		}
		if attempt >= reencryptAttempts {
			return false, fmt.Errorf("write %s: still changing after %d attempts", key, attempt+1)
		}
	}
}

// KeepSecretsEncrypted re-encrypts the secrets (ReencryptSecrets) now and
// then whenever the current key of the key file changes or the last pass
// failed, checking the file every interval, until ctx is done. report, if
// not nil, receives the outcome of every pass.
func (s *Store) KeepSecretsEncrypted(ctx context.Context, interval time.Duration, report func(ReencryptResult, error)) {
	if s.kr == nil || s.kr.disabled != nil {
		return
	}
	done := ""
	for {
		if _, err := s.kr.Refresh(); err == nil && s.kr.CurrentID() != done {
			res, err := s.ReencryptSecrets(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				done = res.KeyID
			}
			if report != nil {
				report(res, err)
			}
		} else if err != nil && report != nil && ctx.Err() == nil {
			report(ReencryptResult{}, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
