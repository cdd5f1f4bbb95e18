package edgeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images/imagetest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nats-io/nats.go"
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

// startRecordingOCIAgent runs node-1 with an "oci" runtime that records what it is
// given (the unpacked image directory) instead of running it, over the
// agent's real image store in dataDir.
func startRecordingOCIAgent(t *testing.T, url, dataDir string) *fakeRuntime {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt := newFakeRuntime()
	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	cfg := Config{
		NodeName: "node-1", DataDir: dataDir, Address: "10.1.2.3",
		HeartbeatInterval: 200 * time.Millisecond, Runtimes: map[string]runtime.Runtime{manifests.RuntimeOCI: ociRuntime{rt}},
		BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	go func() { done <- Run(ctx, nc, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
	})
	return rt
}

// ociTestPod is an OCI pod of image on node-1 with pull policy policy.
func ociTestPod(name, image, policy string) *manifests.Pod {
	return &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{
			NodeName:   "node-1",
			Containers: []manifests.Container{{Name: "main", Image: image, ImagePullPolicy: policy}},
		},
	}
}

// TestPrepullOCIImageThenStartWithoutFetch prepulls OCI images, one from a
// registry (a loopback one) and one pushed to the control plane's store,
// then starts pods of them: neither is fetched again (with pull policy
// IfNotPresent the registry sees no request at all; with Always it is
// asked for the manifest only, no layer is downloaded again).
func TestPrepullOCIImageThenStartWithoutFetch(t *testing.T) {
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	img := imagetest.Image(t, v1.Config{Cmd: []string{"/app"}},
		imagetest.Layer(t, imagetest.File{Name: "app", Body: "#!/bin/true\n", Mode: 0o755}),
		imagetest.Layer(t, imagetest.File{Name: "etc", Dir: true}, imagetest.File{Name: "etc/probe.conf", Body: "v=2\n"}))
	regRef := reg.Push(t, "fleet/probe:v2", img)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	digest := d.String()

	// The same image under another name, pushed to the control plane.
	cpImg := imagetest.Image(t, v1.Config{Cmd: []string{"/app"}},
		imagetest.Layer(t, imagetest.File{Name: "app", Body: "#!/bin/false\n", Mode: 0o755}))
	cpDigest, err := cp.cl.PushImage(ctx, "localhost/probe:v3", cpImg)
	if err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	rt := startRecordingOCIAgent(t, cp.url, dataDir)
	eventually(t, 10*time.Second, func() error {
		_, err := cp.cl.Get(ctx, "nodes", "", "node-1")
		return err
	})

	if r := prepullRequest(t, cp, client.PrepullRequest{Image: "localhost/probe:v9", Runtime: "oci"}); r.Error == "" {
		t.Fatalf("an image in neither place prepulled: %+v", r)
	}
	if r := prepullRequest(t, cp, client.PrepullRequest{Image: regRef, Runtime: "wasm"}); !strings.Contains(r.Error, "no wasm runtime") {
		t.Fatalf("wasm on an oci node: %+v", r)
	}

	blobGets := func() int {
		n := 0
		layers, _ := img.Layers()
		for _, l := range layers {
			ld, _ := l.Digest()
			n += reg.Count("GET /v2/fleet/probe/blobs/" + ld.String())
		}
		return n
	}
	if n := blobGets(); n != 0 {
		t.Fatalf("%d layer fetches before the prepull", n)
	}
	r := prepullRequest(t, cp, client.PrepullRequest{Image: regRef, Runtime: "oci"})
	if r.Error != "" || r.Digest != digest {
		t.Fatalf("prepull %s: %+v, want digest %s", regRef, r, digest)
	}
	if n := blobGets(); n != 2 {
		t.Fatalf("%d layer fetches by the prepull, want 2", n)
	}
	r = prepullRequest(t, cp, client.PrepullRequest{Image: "localhost/probe:v3", Runtime: "oci"})
	if r.Error != "" || r.Digest != cpDigest {
		t.Fatalf("prepull localhost/probe:v3: %+v, want digest %s", r, cpDigest)
	}

	// Remove the control plane's copy (blobs and tag): a pod that fetched
	// it now would fail to pull.
	names := []string{messaging.ModuleObjectName("localhost/probe:v3"), messaging.ModuleDigestName(strings.TrimPrefix(cpDigest, "sha256:"))}
	cfgName, err := cpImg.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	cpLayers, err := cpImg.Layers()
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, messaging.ModuleDigestName(cfgName.Hex))
	for _, l := range cpLayers {
		ld, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, messaging.ModuleDigestName(ld.Hex))
	}
	for _, n := range names {
		if err := cp.buckets.Modules.Delete(ctx, n); err != nil {
			t.Fatalf("delete %s: %v", n, err)
		}
	}
	before := reg.Requests()

	// Pods of both start without a fetch: the registry sees no request.
	cp.assign(t, ociTestPod("pre-reg", regRef, "IfNotPresent"))
	cp.assign(t, ociTestPod("pre-cp", "localhost/probe:v3", "IfNotPresent"))
	for name, want := range map[string]string{"pre-reg": digest, "pre-cp": cpDigest} {
		eventually(t, 20*time.Second, func() error {
			p := cp.pod(t, name)
			cs := p.Status.ContainerStatuses
			if p.Status.Phase != "Running" || len(cs) != 1 || cs[0].State.Running == nil || cs[0].ImageID != want {
				return fmt.Errorf("pod %s: status %+v", name, p.Status)
			}
			return nil
		})
	}
	if n := reg.Requests() - before; n != 0 {
		t.Fatalf("the registry served %d requests for pods of a prepulled image", n)
	}
	// With imagePullPolicy Always the registry is asked for the manifest,
	// but no layer is downloaded again.
	layersBefore := blobGets()
	cp.assign(t, ociTestPod("pre-always", regRef, "Always"))
	eventually(t, 20*time.Second, func() error {
		p := cp.pod(t, "pre-always")
		if cs := p.Status.ContainerStatuses; p.Status.Phase != "Running" || len(cs) != 1 || cs[0].ImageID != digest {
			return fmt.Errorf("pod pre-always: status %+v", p.Status)
		}
		return nil
	})
	if reg.Requests() == before {
		t.Errorf("policy Always did not ask the registry")
	}
	if n := blobGets() - layersBefore; n != 0 {
		t.Errorf("policy Always downloaded %d layers of a prepulled image again", n)
	}
	// The runtime got the unpacked images from the node's store.
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var dirs []string
	for _, c := range rt.configs {
		dirs = append(dirs, c.Image)
		if !strings.HasPrefix(c.Image, dataDir) {
			t.Errorf("container image %q is not in the node's store under %s", c.Image, dataDir)
		} else if _, err := os.Stat(filepath.Join(c.Image, "rootfs", "app")); err != nil {
			t.Errorf("unpacked image: %v", err)
		}
	}
	if len(dirs) != 3 {
		t.Fatalf("containers created from %v, want 3", dirs)
	}
}
