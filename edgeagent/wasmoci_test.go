package edgeagent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images/imagetest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// podLogs returns the current log of pod's container main via the node's
// logs subject.
func podLogs(t *testing.T, cp *controlPlane, pod string) (string, error) {
	t.Helper()
	raw, _ := json.Marshal(client.LogsRequest{Namespace: "default", Pod: pod})
	m, err := cp.cl.Conn().Request(messaging.NodeSubject("node-1", messaging.NodeVerbLogs), raw, 5*time.Second)
	if err != nil {
		return "", err
	}
	var chunk client.LogsChunk
	if err := json.Unmarshal(m.Data, &chunk); err != nil {
		return "", err
	}
	if chunk.Error != nil {
		return "", fmt.Errorf("logs of %s: %+v", pod, chunk.Error)
	}
	return string(chunk.Data), nil
}

func TestAgentRunsWasmModuleFromRegistry(t *testing.T) {
	cp := startControlPlane(t)
	ctx := ctxT(t)
	module, err := os.ReadFile(testmodules.Path(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(module)
	digest := hex.EncodeToString(sum[:])
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{User: "alice", Password: "s3cret"})
	ref := reg.Push(t, "demo/hello:v1", imagetest.WasmArtifact(t, module, ""))
	imageRef := reg.Push(t, "demo/container:v1", imagetest.Image(t, v1.Config{}, imagetest.Layer(t, imagetest.File{Name: "x", Body: "y"})))
	for _, obj := range []manifests.Object{
		&manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "greetings", Namespace: "default"}, Data: map[string]string{"text": "oci-hi"}},
		&manifests.Secret{ObjectMeta: manifests.ObjectMeta{Name: "regcred", Namespace: "default"}, Type: secretTypeDockerConfigJSON,
			Data: map[string][]byte{".dockerconfigjson": imagetest.DockerConfig(reg.Host, "alice", "s3cret")}},
	} {
		if _, _, err := cp.cl.Apply(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := t.TempDir()
	ag := startAgent(t, cp.url, dataDir)

	withSecret := func(p *manifests.Pod) *manifests.Pod {
		p.Spec.ImagePullSecrets = []manifests.LocalObjectRef{{Name: "regcred"}}
		p.Spec.Containers[0].ImagePullPolicy = "IfNotPresent"
		return p
	}
	cp.assign(t, withSecret(wasmPod("ocihello", ref, "Always")))
	// Without the pull secret the registry refuses (policy Always: the
	// registry is asked even though the node has the module); a container
	// image is no module.
	nosecret := wasmPod("nosecret", ref, "Always")
	nosecret.Spec.Containers[0].ImagePullPolicy = "Always"
	cp.assign(t, nosecret)
	cp.assign(t, withSecret(wasmPod("notwasm", imageRef, "Always")))

	running := func() error {
		p := cp.pod(t, "ocihello")
		cs := p.Status.ContainerStatuses
		if p.Status.Phase != "Running" || len(cs) != 1 || cs[0].State.Running == nil {
			return fmt.Errorf("status %+v", p.Status)
		}
		if cs[0].ImageID != "sha256:"+digest || cs[0].Image != ref {
			return fmt.Errorf("container status %+v, want image ID sha256:%s", cs[0], digest)
		}
		return nil
	}
	eventually(t, 20*time.Second, running)
	eventually(t, 10*time.Second, func() error {
		out, err := podLogs(t, cp, "ocihello")
		if err == nil && !strings.Contains(out, "oci-hi from node-1 #1") {
			err = fmt.Errorf("logs %q", out)
		}
		return err
	})
	if got, err := os.ReadFile(filepath.Join(dataDir, "images", "blobs", "sha256", digest)); err != nil || string(got) != string(module) {
		t.Fatalf("module not in the image store: %v", err)
	}
	waiting := func(pod, msg string) func() error {
		return func() error {
			cs := cp.pod(t, pod).Status.ContainerStatuses
			if len(cs) != 1 || cs[0].State.Waiting == nil {
				return fmt.Errorf("%s: statuses %+v", pod, cs)
			}
			w := cs[0].State.Waiting
			if (w.Reason != reasonErrImagePull && w.Reason != reasonImagePullBackOff) || !strings.Contains(w.Message, msg) {
				return fmt.Errorf("%s: waiting %+v, want a pull error with %q", pod, w, msg)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, waiting("nosecret", "unauthorized"))
	eventually(t, 10*time.Second, waiting("notwasm", "not a wasm module artifact"))

	// Restarted with the registry gone, the agent runs the module it has
	// (image GC at start keeps what pods use).
	before := cp.pod(t, "ocihello").Status.ContainerStatuses[0].ContainerID
	ag.cancel()
	reg.Close()
	startAgent(t, cp.url, dataDir)
	eventually(t, 20*time.Second, func() error {
		if err := running(); err != nil {
			return err
		}
		if id := cp.pod(t, "ocihello").Status.ContainerStatuses[0].ContainerID; id == before {
			return fmt.Errorf("container %s not started again yet", id)
		}
		out, err := podLogs(t, cp, "ocihello")
		if err == nil && !strings.Contains(out, "oci-hi from node-1 #1") {
			err = fmt.Errorf("logs after restart %q", out)
		}
		return err
	})
	if _, err := os.Stat(filepath.Join(dataDir, "images", "blobs", "sha256", digest)); err != nil {
		t.Fatalf("module collected while in use: %v", err)
	}
}
