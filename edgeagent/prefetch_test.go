package edgeagent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

func prepullRequest(t *testing.T, cp *controlPlane, req client.PrepullRequest) client.PrepullReply {
	t.Helper()
	raw, _ := json.Marshal(req)
	m, err := cp.cl.Conn().Request(messaging.NodeSubject("node-1", messaging.NodeVerbPrepull), raw, 10*time.Second)
	if err != nil {
		t.Fatalf("prepull request: %v", err)
	}
	var reply client.PrepullReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		t.Fatal(err)
	}
	return reply
}

func TestPrepullThenStartWithoutFetch(t *testing.T) {
	cp := startControlPlane(t)
	ctx := ctxT(t)
	f, err := os.Open(testmodules.Path(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	digest, err := cp.cl.PushModule(ctx, "hello:v2", f)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.cl.Apply(ctx, &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "greetings", Namespace: "default"}, Data: map[string]string{"text": "hi"}}); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	startAgent(t, cp.url, dataDir)
	// The agent serves its node subjects once it runs.
	eventually(t, 10*time.Second, func() error {
		_, err := cp.cl.Get(ctx, "nodes", "", "node-1")
		return err
	})

	// Errors are replies, not silence.
	if r := prepullRequest(t, cp, client.PrepullRequest{Image: "missing:v1"}); r.Error == "" || !strings.Contains(r.Error, "not found") {
		t.Fatalf("missing module: %+v", r)
	}
	if r := prepullRequest(t, cp, client.PrepullRequest{Image: "hello:v2", Runtime: "oci"}); !strings.Contains(r.Error, "no oci runtime") {
		t.Fatalf("oci on a wasm node: %+v", r)
	}

	modPath := filepath.Join(dataDir, "modules", "sha256", digest+".wasm")
	if _, err := os.Stat(modPath); err == nil {
		t.Fatal("module cached before the prepull")
	}
	r := prepullRequest(t, cp, client.PrepullRequest{Image: "hello:v2", Runtime: "wasm"})
	if r.Error != "" || r.Digest != "sha256:"+digest {
		t.Fatalf("prepull: %+v, want digest sha256:%s", r, digest)
	}
	if _, err := os.Stat(modPath); err != nil {
		t.Fatalf("module not in the cache after the prepull: %v", err)
	}

	// Remove the module's content from the control plane: a pod that
	// fetched it now would fail, so a Running pod proves it was not fetched.
	if err := cp.buckets.Modules.Delete(ctx, messaging.ModuleDigestName(digest)); err != nil {
		t.Fatal(err)
	}
	cp.assign(t, wasmPod("pre", "hello:v2", "Always"))
	eventually(t, 15*time.Second, func() error {
		p := cp.pod(t, "pre")
		cs := p.Status.ContainerStatuses
		if p.Status.Phase != "Running" || len(cs) != 1 || cs[0].State.Running == nil || cs[0].ImageID != "sha256:"+digest {
			return fmt.Errorf("status %+v", p.Status)
		}
		return nil
	})
}
