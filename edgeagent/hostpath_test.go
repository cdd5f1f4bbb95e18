package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
	"github.com/nats-io/nats.go"
)

func TestHostPathPolicyCheck(t *testing.T) {
	allowed := t.TempDir()
	other := t.TempDir()
	if err := os.Mkdir(filepath.Join(allowed, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, filepath.Join(allowed, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(allowed, "sub"), filepath.Join(other, "in")); err != nil {
		t.Fatal(err)
	}
	p, err := NewHostPathPolicy([]string{allowed})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string // want: the path to mount, or "" for refused
	}{
		{allowed, allowed},
		{allowed + "/sub", allowed + "/sub"},
		{allowed + "/missing/deeper", allowed + "/missing/deeper"}, // DirectoryOrCreate
		{allowed + "/out", ""},                                     // link out
		{allowed + "/out/x", ""},                                   // through a link out
		{allowed + "/sub/../../", ""},                              // ".." out
		{allowed + "x", ""},                                        // a sibling sharing the prefix
		{other + "/in", allowed + "/sub"},                          // a link in is fine
		{"/etc", ""},
		{"/", ""},
	} {
		got, err := p.Check("v", tc.path)
		if tc.want == "" {
			var na *HostPathNotAllowedError
			if !errors.As(err, &na) {
				t.Errorf("%s: %q %v, want HostPathNotAllowed", tc.path, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.path, got, err, tc.want)
		}
	}
	// The default policy allows nothing, and says how to allow.
	_, err = (*HostPathPolicy)(nil).Check("data", "/srv/data")
	want := "HostPathNotAllowed: volume data: hostPath /srv/data is not allowed on this node; none are allowed: start edge-agent with --allow-host-path PREFIX to allow some"
	if err == nil || err.Error() != want {
		t.Fatalf("default policy: %v", err)
	}
	_, err = p.Check("v", allowed+"/out")
	if err == nil || !strings.Contains(err.Error(), "(resolves to "+other+")") || !strings.Contains(err.Error(), "--allow-host-path): "+allowed) {
		t.Fatalf("message: %v", err)
	}
	if _, err := NewHostPathPolicy([]string{"relative/dir"}); err == nil {
		t.Fatal("relative prefix accepted")
	}
}

func TestConfineSubPath(t *testing.T) {
	vol := t.TempDir()
	other := t.TempDir()
	if err := os.Symlink(other, filepath.Join(vol, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(vol, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := confineSubPath("v", vol, "in"); err != nil || got != filepath.Join(vol, "in") {
		t.Fatalf("in: %q %v", got, err)
	}
	if got, err := confineSubPath("v", vol, "../../etc"); err != nil || got != filepath.Join(vol, "etc") {
		t.Fatalf("dots stay inside: %q %v", got, err)
	}
	for _, sub := range []string{"out", "out/x"} {
		if _, err := confineSubPath("v", vol, sub); err == nil || !strings.Contains(err.Error(), "leads out of the volume") {
			t.Fatalf("%s: %v", sub, err)
		}
	}
}

// startAgentWithPolicy starts an agent with the hostPath policy.
func startAgentWithPolicy(t *testing.T, url string, policy *HostPathPolicy) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := wasm.New(ctx, wasm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	cfg := Config{
		NodeName: "node-1", DataDir: t.TempDir(), Address: "10.1.2.3",
		HeartbeatInterval: 200 * time.Millisecond, Runtimes: map[string]runtime.Runtime{"wasm": rt},
		BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		HostPaths: policy,
	}
	go func() { done <- Run(ctx, nc, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
		rt.Close(context.Background())
	})
}

func hostPathPod(name, path string) *manifests.Pod {
	wasmClass := manifests.RuntimeWasm
	return &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{
			RuntimeClassName: &wasmClass, RestartPolicy: manifests.RestartNever, NodeName: "node-1",
			Volumes: []manifests.Volume{{Name: "host", VolumeSource: manifests.VolumeSource{HostPath: &manifests.HostPathVolumeSource{Path: path}}}},
			Containers: []manifests.Container{{
				Name: "main", Image: "files:v1", Args: []string{"/host"},
				VolumeMounts: []manifests.VolumeMount{{Name: "host", MountPath: "/host"}},
			}},
		},
	}
}

// TestHostPathVolumesFollowThePolicy runs wasm pods with hostPath volumes
// on an agent that allows one prefix: a path outside it, or a link under
// it that leads outside, keeps the pod from starting with a message naming
// the path and the flag; a path inside is mounted.
func TestHostPathVolumesFollowThePolicy(t *testing.T) {
	cp := startControlPlane(t)
	ctx := ctxT(t)
	f, err := os.Open(testmodules.Path(t, "files"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := cp.cl.PushModule(ctx, "files:v1", f); err != nil {
		t.Fatal(err)
	}
	allowed, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(allowed, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(allowed, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	policy, err := NewHostPathPolicy([]string{allowed})
	if err != nil {
		t.Fatal(err)
	}
	startAgentWithPolicy(t, cp.url, policy)

	refused := map[string]string{
		"outside":  outside,
		"link-out": filepath.Join(allowed, "link-out"),
	}
	for name, path := range refused {
		cp.assign(t, hostPathPod(name, path))
	}
	cp.assign(t, hostPathPod("inside", filepath.Join(allowed, "data")))
	for name, path := range refused {
		eventually(t, 20*time.Second, func() error {
			p := cp.pod(t, name)
			if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
				return fmt.Errorf("pod %s: status %+v", name, p.Status)
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			if w.Reason != reasonConfigError || !strings.Contains(w.Message, "HostPathNotAllowed") ||
				!strings.Contains(w.Message, path) || !strings.Contains(w.Message, "--allow-host-path") {
				return fmt.Errorf("pod %s: waiting %+v", name, w)
			}
			t.Logf("pod %s: %s: %s", name, w.Reason, w.Message)
			return nil
		})
	}
	eventually(t, 20*time.Second, func() error {
		p := cp.pod(t, "inside")
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
			return fmt.Errorf("pod inside: status %+v", p.Status)
		}
		if term := p.Status.ContainerStatuses[0].State.Terminated; term.ExitCode != 0 {
			return fmt.Errorf("pod inside: terminated %+v", term)
		}
		return nil
	})
	if data, err := os.ReadFile(filepath.Join(allowed, "data", "written-by-wasm.txt")); err != nil || string(data) != "hello from wasm\n" {
		t.Fatalf("the allowed hostPath was not mounted: %q %v", data, err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("something was written outside the allowed prefix: %v", entries)
	}
}
