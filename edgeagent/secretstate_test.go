package edgeagent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// TestSecretsEncryptedInAgentState runs a wasm pod whose env comes from a
// Secret and a ConfigMap, then scans the agent's bbolt file: the
// configmap's value is there (the scan works), the secret's is not, in
// clear or base64; the state opened again still yields the secret.
func TestSecretsEncryptedInAgentState(t *testing.T) {
	const (
		secretValue  = "PLAINTEXT-agent-secret-c0ffee"
		controlValue = "PLAINTEXT-agent-configmap-beef"
	)
	cp := startControlPlane(t)
	ctx := ctxT(t)
	f, err := os.Open(testmodules.Path(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := cp.cl.PushModule(ctx, "hello:v1", f); err != nil {
		t.Fatal(err)
	}
	sec := &manifests.Secret{Data: map[string][]byte{"greeting": []byte(secretValue)}}
	sec.Name, sec.Namespace = "creds", "default"
	if _, _, err := cp.cl.Apply(ctx, sec); err != nil {
		t.Fatal(err)
	}
	cm := &manifests.ConfigMap{Data: map[string]string{"text": controlValue}}
	cm.Name, cm.Namespace = "greetings", "default"
	if _, _, err := cp.cl.Apply(ctx, cm); err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	ag := startAgent(t, cp.url, dataDir)
	pod := wasmPod("uses-secret", "hello:v1", "Always")
	pod.Spec.Containers[0].Env = []manifests.EnvVar{
		{Name: "GREETING", ValueFrom: &manifests.EnvVarSource{SecretKeyRef: &manifests.KeySelector{Name: "creds", Key: "greeting"}}},
		{Name: "CONTROL", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.KeySelector{Name: "greetings", Key: "text"}}},
		{Name: "NODE_NAME", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
	}
	cp.assign(t, pod)
	// The module got the secret: it prints it.
	eventually(t, 20*time.Second, func() error {
		raw, _ := json.Marshal(client.LogsRequest{Namespace: "default", Pod: "uses-secret"})
		m, err := cp.cl.Conn().Request(messaging.NodeSubject("node-1", messaging.NodeVerbLogs), raw, 5*time.Second)
		if err != nil {
			return err
		}
		var chunk client.LogsChunk
		if err := json.Unmarshal(m.Data, &chunk); err != nil {
			return err
		}
		if !strings.Contains(string(chunk.Data), secretValue+" from node-1") {
			return fmt.Errorf("logs %q (error %v)", chunk.Data, chunk.Error)
		}
		return nil
	})
	dbPath := filepath.Join(dataDir, "agent.db")
	eventually(t, 10*time.Second, func() error {
		data, err := os.ReadFile(dbPath)
		if err != nil {
			return err
		}
		if !bytes.Contains(data, []byte(controlValue)) {
			return fmt.Errorf("the configmap is not in %s yet", dbPath)
		}
		return nil
	})
	ag.cancel() // stopped: everything it keeps is on disk

	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range []string{secretValue, base64.StdEncoding.EncodeToString([]byte(secretValue))} {
		if bytes.Contains(data, []byte(needle)) {
			t.Fatalf("%q found in the agent's state file", needle)
		}
	}
	if st, err := os.Stat(filepath.Join(dataDir, state.KeyFileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state key: %v (mode %v)", err, st.Mode())
	}

	// Offline, the local key opens the kept secret.
	db, err := state.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pods, err := db.Pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 {
		t.Fatalf("%d pods in the state, want 1", len(pods))
	}
	var kept manifests.Secret
	if err := json.Unmarshal(pods[0].Refs[state.RefKey("secrets", "creds")], &kept); err != nil {
		t.Fatalf("kept secret: %v", err)
	}
	if string(kept.Data["greeting"]) != secretValue {
		t.Fatalf("kept secret %+v", kept)
	}
}
