package state

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

// secretRef is the JSON of a Secret as the agent keeps it in Refs.
func secretRef(t *testing.T, data map[string][]byte, stringData map[string]string) json.RawMessage {
	t.Helper()
	s := &manifests.Secret{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Secret"}, Data: data, StringData: stringData}
	s.Name, s.Namespace = "db", "default"
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// fileHas reports whether the file at path contains s or its base64.
func fileHas(t *testing.T, path, s string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(data, []byte(s)) || bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString([]byte(s))))
}

func TestSecretRefsEncrypted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, KeyFileName)
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state key: %v, mode %v; want 0600", err, st.Mode())
	}
	const (
		password = "PLAINTEXT-agent-password-3e9f"
		token    = "PLAINTEXT-agent-token-a71c"
		control  = "PLAINTEXT-agent-configmap-0b2d"
	)
	ref := secretRef(t, map[string][]byte{"password": []byte(password)}, map[string]string{"token": token})
	p := &Pod{Pod: testPod("a", "uid-a"), Revision: 1, Refs: map[string]json.RawMessage{
		RefKey("secrets", "db"):     ref,
		RefKey("configmaps", "cfg"): json.RawMessage(`{"data":{"k":"` + control + `"}}`),
	}}
	if err := db.PutPod(p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Refs[RefKey("secrets", "db")], ref) {
		t.Fatal("PutPod changed the caller's record")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if !fileHas(t, path, control) {
		t.Fatal("the configmap is not in the database file: the scan sees nothing")
	}
	for _, v := range []string{password, token} {
		if fileHas(t, path, v) {
			t.Fatalf("%q found in the database file", v)
		}
	}

	// Reopened (as after a reboot, offline), the secret reads back.
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := db.Pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || !bytes.Equal(pods[0].Refs[RefKey("secrets", "db")], ref) {
		t.Fatalf("secret ref after reopen: %s", pods[0].Refs[RefKey("secrets", "db")])
	}
	// Written back unchanged, it stays encrypted.
	if err := db.PutPod(pods[0]); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if fileHas(t, path, password) {
		t.Fatal("plaintext after a rewrite")
	}

	// With the key file lost, the secret is dropped (fetched again
	// online) and the rest of the record survives.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pods, err = db.Pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].Refs[RefKey("secrets", "db")] != nil || pods[0].Refs[RefKey("configmaps", "cfg")] == nil {
		t.Fatalf("after losing the key: %+v", pods)
	}
}

func TestSealedRefBoundToPod(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := &Pod{Pod: testPod("a", "uid-a"), Refs: map[string]json.RawMessage{
		RefKey("secrets", "db"): secretRef(t, map[string][]byte{"k": []byte("v")}, nil)}}
	sealed, err := db.sealRefs(a)
	if err != nil {
		t.Fatal(err)
	}
	if !isSealed(sealed.Refs[RefKey("secrets", "db")]) {
		t.Fatalf("not sealed: %s", sealed.Refs[RefKey("secrets", "db")])
	}
	// The sealed ref copied into another pod's record does not open.
	b := &Pod{Pod: testPod("b", "uid-b"), Refs: map[string]json.RawMessage{
		RefKey("secrets", "db"): sealed.Refs[RefKey("secrets", "db")]}}
	db.openRefs(b)
	if _, ok := b.Refs[RefKey("secrets", "db")]; ok {
		t.Fatal("a sealed ref opened in another pod's record")
	}
	db.openRefs(sealed)
	if !bytes.Equal(sealed.Refs[RefKey("secrets", "db")], a.Refs[RefKey("secrets", "db")]) {
		t.Fatal("round trip changed the ref")
	}
}

func TestStateKeyInvalid(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KeyFileName), []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "agent.db")); err == nil {
		t.Fatal("a 5-byte state key was accepted")
	}
}
