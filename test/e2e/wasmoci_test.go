package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/images/imagetest"
)

const wasmOCIPod = `apiVersion: v1
kind: Pod
metadata: {name: ocihello}
spec:
  runtimeClassName: wasm
  containers:
  - name: main
    image: %s
`

// TestWasmModuleFromRegistry runs a wasm pod whose module is an OCI
// artifact (wasm-to-oci layout) in a registry on loopback.
func TestWasmModuleFromRegistry(t *testing.T) {
	module, err := os.ReadFile(module(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(module)
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	image := reg.Push(t, "demo/hello:v1", imagetest.WasmArtifact(t, module, ""))

	tmp := t.TempDir()
	agentDir := filepath.Join(tmp, "agent")
	t.Cleanup(func() { removeContainers(agentDir) })
	_, url := controlPlane(t, filepath.Join(tmp, "cp"), "127.0.0.1:0")
	agent(t, url, "box", agentDir, "site=lab")
	mustCtl(t, url, "wait", "--for=condition=Ready", "node/box", "--timeout=30s")
	if r := ctl(t, url, strings.NewReader(fmt.Sprintf(wasmOCIPod, image)), "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	cs := waitRunning(t, url, "ocihello", "main")
	if want := "sha256:" + hex.EncodeToString(sum[:]); cs.ImageID != want || !strings.HasPrefix(cs.ContainerID, "wasm://") {
		t.Errorf("status: imageID %q (want %s) containerID %q", cs.ImageID, want, cs.ContainerID)
	}
	waitLogs(t, url, "ocihello", "main", "hello from ", " #1\n")
}
