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
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/controlplane/volume"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
	"github.com/nats-io/nats.go"
)

// startVolumeController runs the control plane's volume controller (binder
// and local-path provisioner) over cp's store until the test ends.
func startVolumeController(t *testing.T, cp *controlPlane) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st := store.New(cp.buckets.Objects)
	infs := map[string]*controller.Informer{}
	for _, r := range []string{"pods", "nodes", "persistentvolumeclaims", "persistentvolumes", "storageclasses"} {
		infs[r] = controller.NewInformer(st, r)
	}
	vc := volume.New(st, volume.Listers{Pods: infs["pods"], Nodes: infs["nodes"], Claims: infs["persistentvolumeclaims"],
		Volumes: infs["persistentvolumes"], Classes: infs["storageclasses"]}, nil)
	infs["persistentvolumeclaims"].AddHandler(vc.ClaimChanged)
	infs["persistentvolumes"].AddHandler(vc.VolumeChanged)
	infs["pods"].AddHandler(vc.PodChanged)
	for _, inf := range infs {
		go inf.Run(ctx)
	}
	go func() {
		for _, inf := range infs {
			if inf.WaitForSync(ctx) != nil {
				return
			}
		}
		vc.Run(ctx)
	}()
}

// startVolumeAgent runs an agent with a wasm runtime on dataDir, looking
// for volumes to remove every 100ms; stop stops it.
func startVolumeAgent(t *testing.T, url, dataDir string) (stop func()) {
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
		NodeName: "node-1", DataDir: dataDir, Address: "10.1.2.3",
		HeartbeatInterval: 200 * time.Millisecond, Runtimes: map[string]runtime.Runtime{"wasm": rt},
		BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Logger:                slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		VolumeCleanupInterval: 100 * time.Millisecond,
	}
	go func() { done <- Run(ctx, nc, cfg) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
		rt.Close(context.Background())
	}
	t.Cleanup(stop)
	return stop
}

// claimPod runs the files module on the claim mounted at /data: it lists
// /data, then writes /data/written-by-wasm.txt.
func claimPod(name, claim, policy string) *manifests.Pod {
	wasmClass := manifests.RuntimeWasm
	return &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{
			RuntimeClassName: &wasmClass, RestartPolicy: policy, NodeName: "node-1",
			Volumes: []manifests.Volume{{Name: "data", VolumeSource: manifests.VolumeSource{
				PersistentVolumeClaim: &manifests.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
			Containers: []manifests.Container{{
				Name: "main", Image: "files:v1", Args: []string{"/data"},
				VolumeMounts: []manifests.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
		},
	}
}

// unassign deletes pod name and its assignment, as the control plane does.
func (cp *controlPlane) unassign(t *testing.T, name string) {
	t.Helper()
	if _, err := cp.cl.Delete(ctxT(t), "pods", "default", name); err != nil {
		t.Fatal(err)
	}
	if err := cp.buckets.Assignments.Delete(ctxT(t), messaging.AssignmentKey("node-1", "default", name)); err != nil {
		t.Fatal(err)
	}
}

// claimPodLogs returns the logs of pod name's container main, every run.
func claimPodLogs(t *testing.T, dataDir, name string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "pods", "default_"+name+"_*", "logs", "main", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		b.Write(data)
	}
	return b.String()
}

func succeeded(t *testing.T, cp *controlPlane, name string) error {
	p := cp.pod(t, name)
	if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
		return fmt.Errorf("pod %s: status %+v", name, p.Status)
	}
	if term := p.Status.ContainerStatuses[0].State.Terminated; term.ExitCode != 0 {
		return fmt.Errorf("pod %s: terminated %+v", name, term)
	}
	return nil
}

// TestPVCDataSurvivesPodReplacement: a wasm pod writes to its claim (the
// control plane provisions the volume once the pod is on the node); the pod
// is deleted and its replacement sees the data; restarted offline, the
// agent starts the pod again with its volume; the claim deleted, the
// volume (reclaim Delete) loses its directory and goes.
func TestPVCDataSurvivesPodReplacement(t *testing.T) {
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
	startVolumeController(t, cp)
	dataDir := t.TempDir()
	stop := startVolumeAgent(t, cp.url, dataDir)

	claim := &manifests.PersistentVolumeClaim{
		ObjectMeta: manifests.ObjectMeta{Name: "data", Namespace: "default"},
		Spec: manifests.PersistentVolumeClaimSpec{
			AccessModes: []string{manifests.ReadWriteOnce},
			Resources:   manifests.VolumeResourceRequirements{Requests: manifests.ResourceList{"storage": "64Mi"}},
		},
	}
	if _, _, err := cp.cl.Apply(ctx, claim); err != nil {
		t.Fatal(err)
	}
	cp.assign(t, claimPod("writer", "data", manifests.RestartNever))
	eventually(t, 20*time.Second, func() error { return succeeded(t, cp, "writer") })
	o, err := cp.cl.Get(ctx, "persistentvolumeclaims", "default", "data")
	if err != nil {
		t.Fatal(err)
	}
	pvc := o.(*manifests.PersistentVolumeClaim)
	if pvc.Status.Phase != manifests.ClaimBound || pvc.Spec.VolumeName != "pvc-"+pvc.UID {
		t.Fatalf("claim: %+v %+v", pvc.Spec, pvc.Status)
	}
	dir := filepath.Join(dataDir, "volumes", pvc.Spec.VolumeName)
	if data, err := os.ReadFile(filepath.Join(dir, "written-by-wasm.txt")); err != nil || string(data) != "hello from wasm\n" {
		t.Fatalf("the writer's file in %s: %q %v", dir, data, err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("volume directory: %v %v", st, err)
	}
	var info volumeInfo
	if raw, err := os.ReadFile(filepath.Join(dir, volumeInfoFile)); err != nil || json.Unmarshal(raw, &info) != nil || info.Capacity != "64Mi" || info.Claim != "default/data" {
		t.Fatalf("volume info: %+v %v", info, err)
	}

	// Replaced: the new pod sees what the old one wrote.
	cp.unassign(t, "writer")
	eventually(t, 10*time.Second, func() error {
		if d, _ := filepath.Glob(filepath.Join(dataDir, "pods", "default_writer_*")); len(d) > 0 {
			return fmt.Errorf("writer's pod directory still there: %v", d)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, "written-by-wasm.txt")); err != nil {
		t.Fatalf("the volume did not survive the pod: %v", err)
	}
	cp.assign(t, claimPod("reader", "data", manifests.RestartAlways))
	eventually(t, 20*time.Second, func() error {
		if logs := claimPodLogs(t, dataDir, "reader"); !strings.Contains(logs, "list /data: written-by-wasm.txt") {
			return fmt.Errorf("reader's logs: %q", logs)
		}
		return nil
	})

	// Offline: the agent restarts with no control plane and runs the
	// reader again on its volume (it rewrites the file it finds gone).
	stop()
	if err := os.Remove(filepath.Join(dir, "written-by-wasm.txt")); err != nil {
		t.Fatal(err)
	}
	stop = startVolumeAgent(t, closedNATSURL(t), dataDir)
	eventually(t, 20*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(dir, "written-by-wasm.txt")); err != nil {
			return fmt.Errorf("offline, the pod did not run on its volume: %v", err)
		}
		return nil
	})
	stop()

	// Online again: the claim is deleted once its pod is gone; the
	// volume, reclaim policy Delete, loses its directory, then goes.
	startVolumeAgent(t, cp.url, dataDir)
	if _, err := cp.cl.Delete(ctx, "persistentvolumeclaims", "default", "data"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // only to give a wrong removal the time to happen
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("volume directory removed while a pod uses the claim: %v", err)
	}
	if _, err := cp.cl.Get(ctx, "persistentvolumeclaims", "default", "data"); err != nil {
		t.Fatalf("claim in use deleted: %v", err)
	}
	cp.unassign(t, "reader")
	eventually(t, 20*time.Second, func() error {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			return fmt.Errorf("volume directory still there (%v)", err)
		}
		if _, err := cp.cl.Get(ctxT(t), "persistentvolumes", "", pvc.Spec.VolumeName); !client.IsNotFound(err) {
			return fmt.Errorf("volume %s still there (%v)", pvc.Spec.VolumeName, err)
		}
		return nil
	})
}
