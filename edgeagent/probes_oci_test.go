package edgeagent

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/oci"
)

// busyboxImage writes an unpacked image whose rootfs is the host's static
// busybox with the applets the probe tests use.
func busyboxImage(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("OCI probe tests need root (runc, network namespaces)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("OCI probe tests need runc: %v", err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("OCI probe tests need a static busybox at /bin/busybox: %v", err)
	}
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "www"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "httpd", "rm", "echo", "sleep", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	cfg, _ := json.Marshal(map[string]any{"config": map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"sh"}}})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOCIProbes(t *testing.T) {
	image := busyboxImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rt, err := oci.New(ctx, oci.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, rt, &fakeAPI{})
	grace := int64(1)

	// A web server whose readiness follows a file; port 8080 only exists
	// inside the pod's network namespace.
	web := ociPod(image)
	web.Spec.TerminationGracePeriodSeconds = &grace
	web.Spec.Containers[0].Command = []string{"sh", "-c", "echo ok > /www/ready && exec httpd -f -p 8080 -h /www"}
	web.Spec.Containers[0].Ports = []manifests.ContainerPort{{Name: "http", ContainerPort: 8080}}
	web.Spec.Containers[0].ReadinessProbe = &manifests.Probe{
		HTTPGet: &manifests.HTTPGetAction{Path: "/ready", Port: manifests.FromString("http")}, PeriodSeconds: 1, FailureThreshold: 1}
	w := newPodWorker(a, &state.Pod{Pod: web, Revision: 1})
	defer w.teardown(context.Background())

	// A container whose liveness probe dials a closed port.
	dead := ociPod(image)
	dead.Name, dead.UID = "dead", "uid-dead"
	dead.Spec.Containers[0].Command = []string{"sleep", "3600"}
	dead.Spec.Containers[0].LivenessProbe = &manifests.Probe{
		TCPSocket: &manifests.TCPSocketAction{Port: manifests.FromInt(9999)}, PeriodSeconds: 1, FailureThreshold: 1,
		TerminationGracePeriodSeconds: &grace}
	w2 := newPodWorker(a, &state.Pod{Pod: dead, Revision: 1})
	defer w2.teardown(context.Background())

	cs := syncUntil(t, ctx, w, 20*time.Second, "web ready", func(cs manifests.ContainerStatus) bool { return cs.Ready })
	if podCondition(w, manifests.PodReady) != manifests.ConditionTrue {
		t.Fatalf("pod not Ready: %+v", w.rec.Status.Conditions)
	}
	id := strings.TrimPrefix(cs.ContainerID, "oci://")
	execIn := func(cmd ...string) {
		t.Helper()
		var out strings.Builder
		code, err := rt.Exec(ctx, id, runtime.ExecRequest{Cmd: cmd, Stdout: &out, Stderr: &out})
		if err != nil || code != 0 {
			t.Fatalf("exec %v: %d %v %s", cmd, code, err, out.String())
		}
	}
	execIn("rm", "/www/ready")
	syncUntil(t, ctx, w, 10*time.Second, "web unready", func(cs manifests.ContainerStatus) bool { return !cs.Ready })
	if podCondition(w, manifests.PodReady) != manifests.ConditionFalse || podCondition(w, manifests.ContainersReady) != manifests.ConditionFalse {
		t.Fatalf("pod still Ready: %+v", w.rec.Status.Conditions)
	}
	execIn("sh", "-c", "echo ok > /www/ready")
	cs = syncUntil(t, ctx, w, 10*time.Second, "web ready again", func(cs manifests.ContainerStatus) bool { return cs.Ready })
	if cs.RestartCount != 0 {
		t.Fatalf("readiness restarted the container: %+v", cs)
	}

	cs = syncUntil(t, ctx, w2, 20*time.Second, "crash loop", func(cs manifests.ContainerStatus) bool {
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == reasonCrashLoop
	})
	last := cs.LastTerminationState.Terminated
	if cs.RestartCount != 1 || last == nil || last.Reason != "Error" || last.ExitCode != 137 ||
		!strings.HasPrefix(last.Message, "Liveness probe failed: dial tcp 127.0.0.1:9999: connect: connection refused") {
		t.Fatalf("status %+v, last state %+v", cs, last)
	}
	if cs.Ready || podCondition(w2, manifests.PodReady) != manifests.ConditionFalse {
		t.Fatalf("killed container ready: %+v", cs)
	}
}
