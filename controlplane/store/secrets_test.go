package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// jsServer is an embedded server on dataDir that can be restarted.
type jsServer struct {
	dataDir string
	stop    func()
	kv      jetstream.KeyValue
}

func startJS(t *testing.T, dataDir string) *jsServer {
	t.Helper()
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: dataDir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nc, err := messaging.Connect(ctx, ns.ClientURL(), "secrets-test")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() })
	}
	t.Cleanup(stop)
	return &jsServer{dataDir: dataDir, stop: stop, kv: b.Objects}
}

// keyLine returns a random key file line for id.
func keyLine(t *testing.T, id string) string {
	t.Helper()
	_, line, err := NewKeyLine()
	if err != nil {
		t.Fatal(err)
	}
	_, enc, _ := strings.Cut(line, ":")
	return id + ":" + enc
}

func writeKeyFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func secret(ns, name string, data map[string][]byte, stringData map[string]string) *manifests.Secret {
	s := &manifests.Secret{Type: "Opaque", Data: data, StringData: stringData}
	s.Name, s.Namespace = name, ns
	return s
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// filesContaining returns the files under dir that contain needle.
func filesContaining(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, needle) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// storedKeyID is the key id recorded in the stored value of a secret
// ("" when stored in clear).
func storedKeyID(t *testing.T, kv jetstream.KeyValue, ns, name string) string {
	t.Helper()
	e, err := kv.Get(context.Background(), messaging.ObjectKey("secrets", ns, name))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Encrypted *sealedSecret `json:"encrypted"`
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Encrypted == nil {
		return ""
	}
	return v.Encrypted.KeyID
}

func secretValue(t *testing.T, st *Store, ns, name, key string) string {
	t.Helper()
	obj, err := st.Get(context.Background(), "secrets", ns, name)
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*manifests.Secret)
	if v, ok := s.Data[key]; ok {
		return string(v)
	}
	return s.StringData[key]
}

func TestSecretsEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	srv := startJS(t, dataDir)
	keyFile := filepath.Join(t.TempDir(), "conf", "secrets.key")
	kr, err := OpenKeyring(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode())
	}
	st := New(srv.kv, WithKeyring(kr))

	const (
		first    = "first-PLAINTEXT-password-4b1d"
		password = "hunter2-PLAINTEXT-password-9c7e"
		token    = "tok-PLAINTEXT-stringdata-51aa"
		control  = "control-PLAINTEXT-configmap-77e0"
	)
	created, err := st.Create(ctx, secret("default", "db", map[string][]byte{"password": []byte(first)}, nil))
	if err != nil {
		t.Fatal(err)
	}
	upd := secret("default", "db", map[string][]byte{"password": []byte(password)}, map[string]string{"token": token})
	upd.ResourceVersion = created.GetObjectMeta().ResourceVersion
	upd.Labels = map[string]string{"app": "db"}
	if _, err := st.Update(ctx, upd); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, configMap("default", "plain", map[string]string{"k": control}, nil)); err != nil {
		t.Fatal(err)
	}

	// Reads see plain Secrets.
	if got := secretValue(t, st, "default", "db", "password"); got != password {
		t.Fatalf("get: password %q, want %q", got, password)
	}
	if got := secretValue(t, st, "default", "db", "token"); got != token {
		t.Fatalf("get: token %q, want %q", got, token)
	}
	list, _, err := st.List(ctx, "secrets", "default", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || string(list[0].(*manifests.Secret).Data["password"]) != password || list[0].GetObjectMeta().Labels["app"] != "db" {
		t.Fatalf("list: %+v", list)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := st.Watch(wctx, "secrets", "default")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.Type != client.Added || string(ev.Object.(*manifests.Secret).Data["password"]) != password {
		t.Fatalf("watch: %+v", ev)
	}
	if got := storedKeyID(t, srv.kv, "default", "db"); got != kr.CurrentID() {
		t.Fatalf("stored with key %q, want %q", got, kr.CurrentID())
	}

	// The scan finds what is stored in clear (so the files are written
	// and searched), and nothing of the secret.
	storeDir := filepath.Join(dataDir, "jetstream")
	eventually(t, 10*time.Second, func() error {
		if len(filesContaining(t, storeDir, []byte(control))) == 0 {
			return errors.New("the configmap's value is not in the JetStream files yet")
		}
		return nil
	})
	for _, v := range []string{first, password, token} {
		for _, needle := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
			if files := filesContaining(t, storeDir, []byte(needle)); len(files) > 0 {
				t.Errorf("%q found in %v", needle, files)
			}
		}
	}
	// After a restart of the server, still readable and still absent.
	srv.stop()
	srv = startJS(t, dataDir)
	st = New(srv.kv, WithKeyring(kr))
	if got := secretValue(t, st, "default", "db", "password"); got != password {
		t.Fatalf("after restart: password %q", got)
	}
	if files := filesContaining(t, storeDir, []byte(password)); len(files) > 0 {
		t.Errorf("after restart: plaintext found in %v", files)
	}
}

func TestSecretsRotation(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	srv := startJS(t, dataDir)
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	k1, k2 := keyLine(t, "k1"), keyLine(t, "k2")
	writeKeyFile(t, keyFile, k1)
	kr, err := LoadKeyring(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	st := New(srv.kv, WithKeyring(kr))
	// One secret stored before encryption was turned on.
	if _, err := New(srv.kv).Create(ctx, secret("default", "legacy", map[string][]byte{"v": []byte("legacy-value")}, nil)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		name := fmt.Sprintf("s%d", i)
		if _, err := st.Create(ctx, secret("default", name, map[string][]byte{"v": []byte("value-" + name)}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Create(ctx, secret("default", "busy", map[string][]byte{"v": []byte("0")}, nil)); err != nil {
		t.Fatal(err)
	}

	// A new first key: the next writes use it without a restart.
	writeKeyFile(t, keyFile, k2, k1)
	// A writer keeps changing "busy" while the secrets are re-encrypted.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var last string
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			obj, err := st.Get(ctx, "secrets", "default", "busy")
			if err != nil {
				t.Error(err)
				return
			}
			s := obj.(*manifests.Secret)
			s.Data = map[string][]byte{"v": []byte(fmt.Sprint(i))}
			if _, err := st.Update(ctx, s); err == nil {
				last = fmt.Sprint(i)
			} else if !client.IsConflict(err) {
				t.Error(err)
				return
			}
		}
	})
	res, err := st.ReencryptSecrets(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyID != "k2" || res.Rewritten+res.Current != 7 {
		t.Fatalf("reencrypt: %+v, want key k2 and 7 secrets", res)
	}
	for _, name := range []string{"legacy", "s0", "s1", "s2", "s3", "s4", "busy"} {
		if got := storedKeyID(t, srv.kv, "default", name); got != "k2" {
			t.Fatalf("%s stored with key %q after reencrypt, want k2", name, got)
		}
	}
	// A second pass has nothing to do.
	if res, err := st.ReencryptSecrets(ctx); err != nil || res.Rewritten != 0 || res.Current != 7 {
		t.Fatalf("second pass: %+v, %v", res, err)
	}

	// The old key goes; after a restart everything is readable.
	writeKeyFile(t, keyFile, k2)
	srv.stop()
	srv = startJS(t, dataDir)
	kr, err = LoadKeyring(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	st = New(srv.kv, WithKeyring(kr))
	if got := secretValue(t, st, "default", "legacy", "v"); got != "legacy-value" {
		t.Fatalf("legacy: %q", got)
	}
	for i := range 5 {
		name := fmt.Sprintf("s%d", i)
		if got := secretValue(t, st, "default", name, "v"); got != "value-"+name {
			t.Fatalf("%s: %q", name, got)
		}
	}
	if got := secretValue(t, st, "default", "busy", "v"); got != last {
		t.Fatalf("busy: %q, want the last write %q", got, last)
	}
	if files := filesContaining(t, filepath.Join(dataDir, "jetstream"), []byte("value-s3")); len(files) > 0 {
		t.Fatalf("plaintext in %v", files)
	}
}

func TestKeepSecretsEncryptedFollowsKeyFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := startJS(t, t.TempDir())
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	k1 := keyLine(t, "k1")
	writeKeyFile(t, keyFile, k1)
	kr, err := LoadKeyring(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(srv.kv).Create(ctx, secret("default", "legacy", map[string][]byte{"v": []byte("x")}, nil)); err != nil {
		t.Fatal(err)
	}
	st := New(srv.kv, WithKeyring(kr))
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.KeepSecretsEncrypted(ctx, 20*time.Millisecond, nil)
	}()
	wantKey := func(id string) func() error {
		return func() error {
			if got := storedKeyID(t, srv.kv, "default", "legacy"); got != id {
				return fmt.Errorf("stored with key %q, want %q", got, id)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, wantKey("k1"))
	writeKeyFile(t, keyFile, keyLine(t, "k2"), k1)
	eventually(t, 10*time.Second, wantKey("k2"))
	cancel()
	<-done
}

func TestSecretsWrongOrMissingKey(t *testing.T) {
	ctx := context.Background()
	srv := startJS(t, t.TempDir())
	dir := t.TempDir()
	file1, file2 := filepath.Join(dir, "one.key"), filepath.Join(dir, "two.key")
	writeKeyFile(t, file1, keyLine(t, "k1"))
	writeKeyFile(t, file2, keyLine(t, "k2"), keyLine(t, "k1")) // another key called k1
	kr1, err := LoadKeyring(file1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(srv.kv, WithKeyring(kr1)).Create(ctx, secret("default", "db", map[string][]byte{"v": []byte("x")}, nil)); err != nil {
		t.Fatal(err)
	}

	writeKeyFile(t, file2+".only2", keyLine(t, "k2"))
	only2, err := LoadKeyring(file2 + ".only2")
	if err != nil {
		t.Fatal(err)
	}
	st := New(srv.kv, WithKeyring(only2))
	_, err = st.Get(ctx, "secrets", "default", "db")
	if err == nil || !strings.Contains(err.Error(), `"k1"`) || !strings.Contains(err.Error(), file2+".only2") {
		t.Fatalf("unknown key: got %v, want an error naming key k1 and the key file", err)
	}
	if _, _, err := st.List(ctx, "secrets", "", manifests.Selector{}); err == nil || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("list with unknown key: %v", err)
	}

	kr2, err := LoadKeyring(file2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(srv.kv, WithKeyring(kr2)).Get(ctx, "secrets", "default", "db"); err == nil || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("wrong key under the same id: got %v", err)
	}
	if _, err := New(srv.kv).Get(ctx, "secrets", "default", "db"); err == nil || !strings.Contains(err.Error(), "no secrets key file") {
		t.Fatalf("no keyring: got %v", err)
	}
	// A secret whose key is gone can still be deleted.
	if _, err := st.Delete(ctx, "secrets", "default", "db", 0); err != nil {
		t.Fatalf("delete with unknown key: %v", err)
	}

	// Missing file.
	if _, err := LoadKeyring(filepath.Join(dir, "missing.key")); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("missing key file: %v", err)
	}
	// No key file configured: nothing is stored.
	off := New(srv.kv, WithKeyring(DisabledKeyring("no secrets key file is configured")))
	if _, err := off.Create(ctx, secret("default", "nokey", map[string][]byte{"v": []byte("x")}, nil)); err == nil || !strings.Contains(err.Error(), "no secrets key file") {
		t.Fatalf("disabled keyring: %v", err)
	}
	if _, err := srv.kv.Get(ctx, messaging.ObjectKey("secrets", "default", "nokey")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("secret stored without a key: %v", err)
	}
	// Other kinds are unaffected by a missing key.
	if _, err := off.Create(ctx, configMap("default", "cm", map[string]string{"a": "b"}, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestSecretCiphertextBoundToItsKey(t *testing.T) {
	ctx := context.Background()
	srv := startJS(t, t.TempDir())
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	writeKeyFile(t, keyFile, keyLine(t, "k1"))
	kr, err := LoadKeyring(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	st := New(srv.kv, WithKeyring(kr))
	for _, n := range []string{"a", "b"} {
		if _, err := st.Create(ctx, secret("default", n, map[string][]byte{"v": []byte(n)}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	// Someone with write access to the bucket moves a's value onto b.
	a, err := srv.kv.Get(ctx, messaging.ObjectKey("secrets", "default", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.kv.Put(ctx, messaging.ObjectKey("secrets", "default", "b"), a.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "secrets", "default", "b"); err == nil {
		t.Fatal("a ciphertext moved to another secret decrypted")
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.key")
	created, err := CreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	before, _ := os.ReadFile(path)
	if created, err := CreateKeyFile(path); err != nil || created {
		t.Fatalf("second create: %v %v", created, err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("an existing key file was overwritten")
	}
	keys, current, err := ParseKeyFile(before)
	if err != nil || len(keys) != 1 || len(keys[current]) != KeySize {
		t.Fatalf("created file: %v keys, current %q, %v", len(keys), current, err)
	}

	good := keyLine(t, "a")
	for _, tc := range []struct {
		content, want string
	}{
		{"", "no key"},
		{"# only a comment\n\n", "no key"},
		{"nocolon\n", "line 1: want id:base64-key"},
		{"a:!!!\n", `line 1: key "a": not base64`},
		{"a:" + base64.StdEncoding.EncodeToString([]byte("short")) + "\n", `line 1: key "a": 5 bytes, want 32`},
		{good + "\n" + good + "\n", `line 2: key id "a" appears twice`},
		{"\n" + strings.Replace(good, "a:", "a b:", 1) + "\n", `line 2: key id "a b"`},
	} {
		_, _, err := ParseKeyFile([]byte(tc.content))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.content, err, tc.want)
		}
	}
	keys, current, err = ParseKeyFile([]byte("# c\n" + keyLine(t, "new") + "\n  " + good + "  \n"))
	if err != nil || current != "new" || len(keys) != 2 {
		t.Fatalf("two keys: %v %q %v", len(keys), current, err)
	}

	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, []byte(good+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file: %v", err)
	}
}
