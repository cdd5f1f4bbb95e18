package edgeagent

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

// badCommandRuntime fails to start containers of image "fake://bad", as
// runc does when the command does not exist.
type badCommandRuntime struct{ ociRuntime }

func (r badCommandRuntime) StartContainer(ctx context.Context, id string) error {
	st, err := r.ContainerStatus(ctx, id)
	if err == nil && st.Image == "fake://bad" {
		return errors.New(`exec: "nosuch": executable file not found in $PATH`)
	}
	return r.ociRuntime.StartContainer(ctx, id)
}

func ociPod(image string) *manifests.Pod {
	p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", UID: "uid-1"}}
	p.Spec.Containers = []manifests.Container{{Name: "c", Image: image, ImagePullPolicy: "IfNotPresent"}}
	return p
}

func syncStatus(t *testing.T, w *podWorker) manifests.ContainerStatus {
	t.Helper()
	w.sync(context.Background())
	return onlyStatus(t, w)
}

func TestOCIWorkerPullsWithSecretsAndSecurity(t *testing.T) {
	rt := newFakeRuntime()
	api := &fakeAPI{objects: map[string]manifests.Object{
		"secrets/default/regcred": &manifests.Secret{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			Type: secretTypeDockerConfigJSON, Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{}}`)}},
	}}
	a := newTestAgent(t, ociRuntime{rt}, api)
	pod := ociPod("fake://sleep/1h")
	uid, gid, yes, no := int64(1000), int64(2000), true, false
	pod.Spec.ImagePullSecrets = []manifests.LocalObjectRef{{Name: "regcred"}, {Name: "absent"}}
	pod.Spec.SecurityContext = &manifests.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &gid}
	pod.Spec.Containers[0].SecurityContext = &manifests.SecurityContext{
		RunAsGroup: &uid, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
		Capabilities: &manifests.Capabilities{Add: []string{"CAP_NET_ADMIN"}, Drop: []string{"all"}},
	}
	pod.Spec.Containers[0].Resources.Limits = manifests.ResourceList{"memory": "32Mi", "cpu": "250m"}
	w := newPodWorker(a, &state.Pod{Pod: pod, Revision: 1})
	cs := syncStatus(t, w)
	if cs.State.Running == nil || !strings.HasPrefix(cs.ImageID, "sha256:") || len(cs.ImageID) != 71 {
		t.Fatalf("status %+v", cs)
	}
	imgs := a.imgs.(*fakeImages)
	if len(imgs.pulls) != 1 || imgs.pulls[0].Policy != images.PullIfNotPresent || len(imgs.pulls[0].DockerConfigs) != 1 ||
		string(imgs.pulls[0].DockerConfigs[0]) != `{"auths":{}}` || imgs.pulls[0].Source != nil {
		t.Fatalf("pulls %+v", imgs.pulls)
	}
	cfg := rt.configs[strings.TrimPrefix(cs.ContainerID, "oci://")]
	sec := cfg.Security
	if *sec.RunAsUser != 1000 || *sec.RunAsGroup != 1000 || !sec.ReadOnlyRootFS || sec.AllowPrivilegeEscalation ||
		!slices.Equal(sec.CapAdd, []string{"NET_ADMIN"}) || !slices.Equal(sec.CapDrop, []string{"ALL"}) {
		t.Fatalf("security %+v", sec)
	}
	if cfg.PidsLimit != defaultPidsLimit || cfg.MemoryLimitBytes != 32<<20 || cfg.CPUMilli != 250 || cfg.Image != "fake://sleep/1h" {
		t.Fatalf("config %+v", cfg)
	}

	// Image GC keeps what pods use.
	a.collectImages(context.Background())
	if !slices.Contains(imgs.kept, cs.ImageID) {
		t.Fatalf("gc kept %v, want %s", imgs.kept, cs.ImageID)
	}
}

func TestOCIWorkerFailures(t *testing.T) {
	for _, tc := range []struct {
		name, image string
		edit        func(*manifests.Pod)
		reason, msg string
	}{
		{"not found", "fake://missing", nil, reasonErrImagePull, `failed to pull image "fake://missing": fake://missing: image not found`},
		{"privileged", "fake://sleep/1h", func(p *manifests.Pod) {
			yes := true
			p.Spec.Containers[0].SecurityContext = &manifests.SecurityContext{Privileged: &yes}
		}, reasonConfigError, "privileged containers are not allowed"},
		{"run as root", "fake://sleep/1h", func(p *manifests.Pod) {
			yes, root := true, int64(0)
			p.Spec.SecurityContext = &manifests.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &root}
		}, reasonConfigError, "breaks non-root policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newFakeRuntime()
			a := newTestAgent(t, ociRuntime{rt}, &fakeAPI{})
			pod := ociPod(tc.image)
			if tc.edit != nil {
				tc.edit(pod)
			}
			w := newPodWorker(a, &state.Pod{Pod: pod, Revision: 1})
			cs := syncStatus(t, w)
			if cs.State.Waiting == nil || cs.State.Waiting.Reason != tc.reason || !strings.Contains(cs.State.Waiting.Message, tc.msg) {
				t.Fatalf("state %+v, want %s %q", cs.State, tc.reason, tc.msg)
			}
			if len(rt.containers) != 0 {
				t.Fatalf("containers created: %v", rt.containers)
			}
			if tc.reason == reasonErrImagePull {
				// Retried after a back-off, then ImagePullBackOff.
				w.ctrs["c"].retryAt = time.Time{}
				cs = syncStatus(t, w)
				if cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonImagePullBackOff || !strings.Contains(cs.State.Waiting.Message, tc.msg) {
					t.Fatalf("second pull: %+v", cs.State)
				}
			}
		})
	}
}

func TestOCIWorkerStartError(t *testing.T) {
	rt := newFakeRuntime()
	a := newTestAgent(t, badCommandRuntime{ociRuntime{rt}}, &fakeAPI{})
	a.cfg.BackoffBase, a.cfg.BackoffMax = time.Hour, time.Hour
	w := newPodWorker(a, &state.Pod{Pod: ociPod("fake://bad"), Revision: 1})
	cs := syncStatus(t, w)
	last := cs.LastTerminationState.Terminated
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonRunError || last == nil || last.Reason != reasonStartError ||
		last.ExitCode != 128 || !strings.Contains(last.Message, "executable file not found") || cs.RestartCount != 0 {
		t.Fatalf("after first start %+v", cs)
	}
	// The first retry is immediate (as a first crash), the next waits.
	cs = syncStatus(t, w)
	if cs.RestartCount != 1 || cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonRunError {
		t.Fatalf("after second start %+v", cs)
	}
	cs = syncStatus(t, w)
	if cs.RestartCount != 1 || cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonCrashLoop {
		t.Fatalf("in back-off %+v", cs)
	}
	if len(rt.containers) != 0 {
		t.Fatalf("failed containers left: %v", rt.containers)
	}

	// Under restartPolicy Never the container terminates for good.
	pod := ociPod("fake://bad")
	pod.Spec.RestartPolicy = manifests.RestartNever
	pod.UID = "uid-2"
	w = newPodWorker(a, &state.Pod{Pod: pod, Revision: 1})
	cs = syncStatus(t, w)
	if cs.State.Terminated == nil || cs.State.Terminated.Reason != reasonStartError {
		t.Fatalf("never: %+v", cs)
	}
	w.mu.Lock()
	phase := w.rec.Status.Phase
	w.mu.Unlock()
	if phase != manifests.PodFailed {
		t.Fatalf("phase %s", phase)
	}
}

// A restarted agent adopts the containers its runtime still runs: same ID,
// same start time, no restart.
func TestOCIWorkerAdoptsRunningContainers(t *testing.T) {
	rt := newFakeRuntime()
	a := newTestAgent(t, ociRuntime{rt}, &fakeAPI{})
	w := newPodWorker(a, &state.Pod{Pod: ociPod("fake://sleep/1h"), Revision: 1})
	cs := syncStatus(t, w)
	if cs.State.Running == nil {
		t.Fatalf("status %+v", cs)
	}
	recs, err := a.db.Pods()
	if err != nil || len(recs) != 1 {
		t.Fatalf("stored %v %v", recs, err)
	}
	w2 := newPodWorker(a, recs[0])
	cs2 := syncStatus(t, w2)
	if cs2.ContainerID != cs.ContainerID || cs2.RestartCount != 0 || cs2.State.Running == nil ||
		!cs2.State.Running.StartedAt.Equal(cs.State.Running.StartedAt) {
		t.Fatalf("adopted %+v, was %+v", cs2, cs)
	}
	if n := len(rt.containers); n != 1 {
		t.Fatalf("%d containers, want the adopted one only", n)
	}
	// Its later exit is handled as usual.
	rt.exit(strings.TrimPrefix(cs.ContainerID, "oci://"), 3)
	cs2 = syncStatus(t, w2)
	if cs2.RestartCount != 1 || cs2.LastTerminationState.Terminated == nil || cs2.LastTerminationState.Terminated.ExitCode != 3 {
		t.Fatalf("after exit %+v", cs2)
	}
	if want := filepath.Join(a.podDir(w2.pod()), "sandbox"); !slices.Equal(rt.sandboxDirs, []string{want}) {
		t.Fatalf("sandbox dirs %v, want %s", rt.sandboxDirs, want)
	}
}

// With the registry out of reach, a container restarts from the image it
// ran before, even under imagePullPolicy Always; a new image cannot start.
func TestOCIWorkerOfflineRestartUsesLocalImage(t *testing.T) {
	rt := newFakeRuntime()
	a := newTestAgent(t, ociRuntime{rt}, &fakeAPI{})
	pod := ociPod("fake://sleep/1h")
	pod.Spec.Containers[0].ImagePullPolicy = "Always"
	w := newPodWorker(a, &state.Pod{Pod: pod, Revision: 1})
	cs := syncStatus(t, w)
	if cs.State.Running == nil {
		t.Fatalf("status %+v", cs)
	}
	a.imgs.(*fakeImages).offline = true
	rt.exit(strings.TrimPrefix(cs.ContainerID, "oci://"), 1)
	cs2 := syncStatus(t, w)
	if cs2.State.Running == nil || cs2.RestartCount != 1 || cs2.ImageID != cs.ImageID {
		t.Fatalf("offline restart %+v", cs2)
	}

	p2 := ociPod("fake://sleep/2h")
	p2.Spec.Containers[0].ImagePullPolicy = "Always"
	w.update(p2, 2)
	cs3 := syncStatus(t, w)
	if cs3.State.Waiting == nil || cs3.State.Waiting.Reason != reasonErrImagePull || !strings.Contains(cs3.State.Waiting.Message, "registry unreachable") {
		t.Fatalf("new image offline %+v", cs3)
	}
}

// At start, containers no stored pod records are removed; recorded ones and
// containers the agent did not make are left alone.
func TestRemoveOrphanContainers(t *testing.T) {
	ctx := context.Background()
	rt := newFakeRuntime()
	a := newTestAgent(t, ociRuntime{rt}, &fakeAPI{})
	w := newPodWorker(a, &state.Pod{Pod: ociPod("fake://sleep/1h"), Revision: 1})
	kept := strings.TrimPrefix(syncStatus(t, w).ContainerID, "oci://")
	sb, _ := rt.RunPodSandbox(ctx, runtime.PodSandboxConfig{})
	orphan, _ := rt.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "c", Labels: map[string]string{labelPodUID: "uid-gone"}})
	foreign, _ := rt.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "other"})
	recs, err := a.db.Pods()
	if err != nil {
		t.Fatal(err)
	}
	a.removeOrphanContainers(ctx, recs)
	for id, want := range map[string]bool{kept: true, orphan: false, foreign: true} {
		if _, err := rt.ContainerStatus(ctx, id); (err == nil) != want {
			t.Errorf("container %s: present %v, want %v", id, err == nil, want)
		}
	}
}

var _ runtime.Runtime = badCommandRuntime{}
