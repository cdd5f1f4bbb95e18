package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// logBuffer collects a control plane's log for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// replaceKeyFile writes the key file as an operator should edit it: a new
// copy (0600) renamed over the old one, so that the control plane never
// reads a half-written file.
func replaceKeyFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// storedKeyIDs returns the key id in the stored envelope of each secret
// ("" for one stored in clear).
func storedKeyIDs(ctx context.Context, t *testing.T, kv jetstream.KeyValue, names []string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, name := range names {
		e, err := kv.Get(ctx, messaging.ObjectKey("secrets", "default", name))
		if err != nil {
			t.Fatalf("stored secret %s: %v", name, err)
		}
		var v struct {
			Data      json.RawMessage `json:"data"`
			Encrypted *struct {
				KeyID string `json:"keyID"`
			} `json:"encrypted"`
		}
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			t.Fatalf("stored secret %s: %v", name, err)
		}
		if v.Data != nil || v.Encrypted == nil {
			t.Fatalf("stored secret %s is not an envelope: %s", name, e.Value())
		}
		ids[name] = v.Encrypted.KeyID
	}
	return ids
}

// TestRunRotatesSecretsKeyWhileServing rotates the secrets key of a running
// control plane the documented way (docs/security.md: append the new key,
// move it first, remove the old one) while clients keep reading, listing
// and writing Secrets. No request fails; the control plane notices the
// file (no restart, no signal) and re-encrypts every stored Secret with the
// new key; after a restart the old key alone reads none of them, the new
// key alone all of them.
func TestRunRotatesSecretsKeyWhileServing(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	logs := &logBuffer{}
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", SecretsKeyFile: keyFile,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	url, stop := start(t, cfg)
	c := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The first start created the key file with one key.
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	oldKeys, oldID, err := store.ParseKeyFile(data)
	if err != nil || len(oldKeys) != 1 {
		t.Fatalf("created key file: %d keys, %v", len(oldKeys), err)
	}
	oldLine := strings.TrimSpace(string(data))
	newKey := make([]byte, store.KeySize)
	rand.Read(newKey)
	newID := "k2"
	newLine := newID + ":" + base64.StdEncoding.EncodeToString(newKey)

	// Secrets nobody touches during the rotation, and secrets a writer
	// keeps changing.
	want := map[string]string{} // name -> value
	var names []string
	apply := func(name, value string) error {
		s := &manifests.Secret{Data: map[string][]byte{"password": []byte(value)}}
		s.Name = name
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		defer acancel()
		_, _, err := c.Apply(actx, s)
		return err
	}
	for i := range 30 {
		name := fmt.Sprintf("still-%d", i)
		if err := apply(name, "v-"+name); err != nil {
			t.Fatal(err)
		}
		want[name] = "v-" + name
		names = append(names, name)
	}
	const writers = 3
	for i := range writers {
		name := fmt.Sprintf("busy-%d", i)
		if err := apply(name, "0"); err != nil {
			t.Fatal(err)
		}
		want[name] = "0"
		names = append(names, name)
	}
	kv, err := jetstream.New(c.Conn())
	if err != nil {
		t.Fatal(err)
	}
	objects, err := kv.KeyValue(ctx, messaging.BucketObjects)
	if err != nil {
		t.Fatal(err)
	}
	for name, id := range storedKeyIDs(ctx, t, objects, names) {
		if id != oldID {
			t.Fatalf("secret %s stored with key %q, want %q", name, id, oldID)
		}
	}

	// The load: each writer updates its secret in a loop; readers get
	// every secret and check its value, and list them all.
	var (
		ops, failures atomic.Int64
		errMu         sync.Mutex
		firstErrs     []string
		lastWritten   [writers]atomic.Int64
		wg            sync.WaitGroup
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	fail := func(format string, args ...any) {
		failures.Add(1)
		errMu.Lock()
		defer errMu.Unlock()
		if len(firstErrs) < 10 {
			firstErrs = append(firstErrs, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
		}
	}
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("busy-%d", i)
			for n := int64(1); loadCtx.Err() == nil; n++ {
				if err := apply(name, fmt.Sprint(n)); err != nil {
					if loadCtx.Err() == nil {
						fail("apply %s: %v", name, err)
					}
					continue
				}
				lastWritten[i].Store(n)
				ops.Add(1)
			}
		}()
	}
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := r; loadCtx.Err() == nil; n++ {
				gctx, gcancel := context.WithTimeout(loadCtx, 10*time.Second)
				if n%10 == 0 {
					objs, _, err := c.List(gctx, "secrets", "default", "")
					switch {
					case loadCtx.Err() != nil:
					case err != nil:
						fail("list secrets: %v", err)
					case len(objs) != len(names):
						fail("list secrets: %d, want %d", len(objs), len(names))
					default:
						ops.Add(1)
					}
				} else {
					name := names[n%len(names)]
					obj, err := c.Get(gctx, "secrets", "default", name)
					switch {
					case loadCtx.Err() != nil:
					case err != nil:
						fail("get secret %s: %v", name, err)
					case len(obj.(*manifests.Secret).Data["password"]) == 0:
						fail("get secret %s: no password", name)
					case strings.HasPrefix(name, "still-") && string(obj.(*manifests.Secret).Data["password"]) != want[name]:
						fail("get secret %s: %q, want %q", name, obj.(*manifests.Secret).Data["password"], want[name])
					default:
						ops.Add(1)
					}
				}
				gcancel()
			}
		}()
	}
	// progress waits until the load has done n more successful requests.
	progress := func(n int64) {
		t.Helper()
		target := ops.Load() + n
		controllertest.Eventually(t, 60*time.Second, func() error {
			if got := ops.Load(); got < target {
				return fmt.Errorf("%d requests done, waiting for %d", got, target)
			}
			return nil
		})
	}
	progress(100)

	// 1. The new key as the last line: it only decrypts; writes keep
	// using the old key.
	replaceKeyFile(t, keyFile, oldLine, newLine)
	progress(200)
	if ids := storedKeyIDs(ctx, t, objects, names); ids["still-0"] != oldID || ids["busy-0"] != oldID {
		t.Fatalf("after appending the new key: stored with %v, want %q everywhere", ids, oldID)
	}

	// 2. The new key first: writes use it at once, and within the check
	// interval every stored secret is re-encrypted with it.
	rotated := time.Now()
	replaceKeyFile(t, keyFile, newLine, oldLine)
	controllertest.Eventually(t, 2*keyringCheckInterval+10*time.Second, func() error {
		for name, id := range storedKeyIDs(ctx, t, objects, names) {
			if id != newID {
				return fmt.Errorf("secret %s still stored with key %q", name, id)
			}
		}
		if !strings.Contains(logs.String(), `msg="secrets: re-encrypted" key=`+newID) {
			return fmt.Errorf("no re-encryption logged yet")
		}
		return nil
	})
	t.Logf("every secret re-encrypted with %s %v after the key file changed", newID, time.Since(rotated).Round(time.Millisecond))

	// 3. The old key removed: everything stays readable and writable.
	replaceKeyFile(t, keyFile, newLine)
	progress(200)
	stopLoad()
	wg.Wait()
	t.Logf("%d requests during the rotation, %d failed", ops.Load(), failures.Load())
	if failures.Load() != 0 {
		t.Fatalf("%d requests failed during the rotation, first:\n%s", failures.Load(), strings.Join(firstErrs, "\n"))
	}
	for i := range writers {
		want[fmt.Sprintf("busy-%d", i)] = fmt.Sprint(lastWritten[i].Load())
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	c.Conn().Close()

	// A restart with the old key alone reads none of them: the stored
	// envelopes need the new key.
	oldOnly := filepath.Join(t.TempDir(), "old.key")
	replaceKeyFile(t, oldOnly, oldLine)
	oldCfg := cfg
	oldCfg.SecretsKeyFile = oldOnly
	oldCfg.Logger = slog.New(slog.DiscardHandler)
	url, stop = start(t, oldCfg)
	c = connect(t, url)
	for _, name := range names {
		_, err := c.Get(ctx, "secrets", "default", name)
		if err == nil || !strings.Contains(err.Error(), `secret encrypted with key "`+newID+`", which is not in the secrets key file`) {
			t.Fatalf("get %s with the old key only: %v, want an error naming key %s", name, err, newID)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	c.Conn().Close()

	// A restart with the new key alone (the rotated file) reads every
	// secret, with its last value.
	url, stop = start(t, cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	c = connect(t, url)
	for name, value := range want {
		obj, err := c.Get(ctx, "secrets", "default", name)
		if err != nil {
			t.Fatalf("get %s after the rotation and a restart: %v", name, err)
		}
		if got := string(obj.(*manifests.Secret).Data["password"]); got != value {
			t.Fatalf("secret %s: %q, want %q", name, got, value)
		}
	}
}
