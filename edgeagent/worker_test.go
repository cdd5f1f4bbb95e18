package edgeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/nats-io/nats.go"
)

// fakeRuntime keeps containers in memory; tests make them exit.
type fakeRuntime struct {
	mu         sync.Mutex
	n          int
	sandboxes  map[string]bool
	containers map[string]*runtime.ContainerStatus
	configs    map[string]runtime.ContainerConfig
	// sandboxDirs are the Dir of every sandbox run.
	sandboxDirs []string
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{sandboxes: map[string]bool{}, containers: map[string]*runtime.ContainerStatus{}, configs: map[string]runtime.ContainerConfig{}}
}

func (f *fakeRuntime) Name() string { return "wasm" }

func (f *fakeRuntime) RunPodSandbox(_ context.Context, cfg runtime.PodSandboxConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	id := fmt.Sprintf("sb%d", f.n)
	f.sandboxes[id] = true
	f.sandboxDirs = append(f.sandboxDirs, cfg.Dir)
	return id, nil
}

func (f *fakeRuntime) StopPodSandbox(context.Context, string) error { return nil }

func (f *fakeRuntime) RemovePodSandbox(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sandboxes, id)
	return nil
}

func (f *fakeRuntime) CreateContainer(_ context.Context, sb string, cfg runtime.ContainerConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sandboxes[sb] {
		return "", fmt.Errorf("sandbox %s: %w", sb, runtime.ErrNotFound)
	}
	f.n++
	id := fmt.Sprintf("c%d", f.n)
	f.containers[id] = &runtime.ContainerStatus{ID: id, SandboxID: sb, Name: cfg.Name, Image: cfg.Image, State: runtime.StateCreated, Labels: cfg.Labels}
	f.configs[id] = cfg
	return id, nil
}

func (f *fakeRuntime) StartContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return runtime.ErrNotFound
	}
	c.State, c.StartedAt = runtime.StateRunning, time.Now()
	return nil
}

func (f *fakeRuntime) exit(id string, code int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	c.State, c.ExitCode, c.FinishedAt = runtime.StateExited, code, time.Now()
}

func (f *fakeRuntime) StopContainer(_ context.Context, id string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.containers[id]; ok && c.State == runtime.StateRunning {
		c.State, c.ExitCode, c.Reason, c.FinishedAt = runtime.StateExited, 137, runtime.ReasonKilled, time.Now()
	}
	return nil
}

func (f *fakeRuntime) RemoveContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
	return nil
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, id string) (runtime.ContainerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return runtime.ContainerStatus{}, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	return *c, nil
}

func (f *fakeRuntime) ListContainers(context.Context, runtime.ContainerFilter) ([]runtime.ContainerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []runtime.ContainerStatus
	for _, c := range f.containers {
		out = append(out, *c)
	}
	return out, nil
}

func (f *fakeRuntime) Close(context.Context) error { return nil }

// forget drops everything, as a restarted in-process runtime would.
func (f *fakeRuntime) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sandboxes = map[string]bool{}
	f.containers = map[string]*runtime.ContainerStatus{}
}

// fakeAPI serves configmaps from a map and records nothing else.
type fakeAPI struct {
	objects map[string]manifests.Object
}

func (f *fakeAPI) Apply(context.Context, manifests.Object) (string, manifests.Object, error) {
	return "", nil, client.Errorf(client.CodeUnavailable, "fake")
}

func (f *fakeAPI) Get(_ context.Context, resource, namespace, name string) (manifests.Object, error) {
	if o, ok := f.objects[resource+"/"+namespace+"/"+name]; ok {
		return o, nil
	}
	return nil, client.Errorf(client.CodeNotFound, "%s %q not found", resource, name)
}

func (f *fakeAPI) Update(context.Context, manifests.Object) (manifests.Object, error) {
	return nil, client.Errorf(client.CodeUnavailable, "fake")
}

func (f *fakeAPI) UpdateStatus(context.Context, manifests.Object) (manifests.Object, error) {
	return nil, client.Errorf(client.CodeUnavailable, "fake")
}

func (f *fakeAPI) ResolveModule(_ context.Context, ref string) (string, error) {
	return "", client.Errorf(client.CodeNotFound, "module %q not found", ref)
}

func (f *fakeAPI) FetchModule(context.Context, string, io.Writer) error {
	return client.Errorf(client.CodeNotFound, "fake")
}

func (f *fakeAPI) ResolveImage(_ context.Context, ref string) (string, error) {
	return "", client.Errorf(client.CodeNotFound, "image %q not found", ref)
}

func (f *fakeAPI) FetchBlob(context.Context, string, io.Writer) error {
	return client.Errorf(client.CodeNotFound, "fake")
}

func newTestAgent(t *testing.T, rt runtime.Runtime, api API) *Agent {
	t.Helper()
	cfg := Config{NodeName: "n1", DataDir: t.TempDir(), Address: "10.0.0.9", Runtimes: map[string]runtime.Runtime{}, BackoffBase: time.Hour, BackoffMax: time.Hour}
	if rt != nil {
		cfg.Runtimes[rt.Name()] = rt
	}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(cfg.DataDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := nats.Connect(closedNATSURL(t), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &Agent{cfg: cfg, log: log, api: api, db: db, nc: nc, mods: newModuleCache(t.TempDir(), api), imgs: &fakeImages{},
		st: newStatusQueue(api, log), workers: map[string]*podWorker{}, gone: map[string]*podWorker{}}
}

// closedNATSURL is a NATS URL nobody listens on: an agent using it is offline.
func closedNATSURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "nats://" + l.Addr().String()
}

// fakeImages "pulls" fake:// images: the image directory is the reference
// itself, "fake://missing" is not found, and pulls are recorded.
type fakeImages struct {
	mu    sync.Mutex
	pulls []images.PullOptions
	kept  []string
	// offline makes pulls that must reach the registry fail.
	offline bool
}

func (f *fakeImages) Pull(_ context.Context, ref string, opts images.PullOptions) (images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls = append(f.pulls, opts)
	if ref == "fake://missing" {
		return images.Image{}, fmt.Errorf("%s: %w", ref, images.ErrNotFound)
	}
	if f.offline && opts.Policy == images.PullAlways {
		return images.Image{}, fmt.Errorf("%s: %w", ref, images.ErrUnreachable)
	}
	sum := sha256.Sum256([]byte(ref))
	return images.Image{Ref: ref, Digest: "sha256:" + hex.EncodeToString(sum[:]), Dir: ref}, nil
}

// PullWasm finds no module: tests of modules from registries use a real
// images.Store.
func (f *fakeImages) PullWasm(_ context.Context, ref string, opts images.PullOptions) (images.WasmModule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls = append(f.pulls, opts)
	return images.WasmModule{}, fmt.Errorf("%s: %w", ref, images.ErrNotFound)
}

func (f *fakeImages) GC(_ context.Context, keep []string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kept = keep
	return 0, nil
}

// testWorkerPod is a one-container pod for handler whose argument uses an
// environment variable from configmap cfg.
func testWorkerPod(handler, image, policy string) *manifests.Pod {
	p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", UID: "uid-1"}}
	p.Spec.RuntimeClassName = &handler
	p.Spec.RestartPolicy = policy
	p.Spec.Containers = []manifests.Container{{Name: "c", Image: image,
		Env:  []manifests.EnvVar{{Name: "LEVEL", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.KeySelector{Name: "cfg", Key: "level"}}}},
		Args: []string{"--level=$(LEVEL)"}}}
	return p
}

func onlyStatus(t *testing.T, w *podWorker) manifests.ContainerStatus {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rec.Status == nil || len(w.rec.Status.ContainerStatuses) != 1 {
		t.Fatalf("status %+v", w.rec.Status)
	}
	return w.rec.Status.ContainerStatuses[0]
}

// ociRuntime registers the fake under "oci", whose images are passed
// through without module resolution.
type ociRuntime struct{ *fakeRuntime }

func (ociRuntime) Name() string { return "oci" }

func TestWorkerRestartsCrashLoopAndConfig(t *testing.T) {
	ctx := context.Background()
	rt := newFakeRuntime()
	api := &fakeAPI{objects: map[string]manifests.Object{}}
	a := newTestAgent(t, ociRuntime{rt}, api)
	w := newPodWorker(a, &state.Pod{Pod: testWorkerPod("oci", "img:v1", "Always"), Revision: 1})

	// The configmap is missing: CreateContainerConfigError, nothing created.
	w.sync(ctx)
	cs := onlyStatus(t, w)
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonConfigError || !strings.Contains(cs.State.Waiting.Message, `configmaps "cfg" not found`) {
		t.Fatalf("state %+v", cs.State)
	}
	api.objects["configmaps/default/cfg"] = &manifests.ConfigMap{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, Data: map[string]string{"level": "debug"}}
	// Retried after the back-off only.
	w.ctrs["c"].retryAt = time.Time{}
	w.sync(ctx)
	cs = onlyStatus(t, w)
	if cs.State.Running == nil || !cs.Ready || cs.ContainerID == "" {
		t.Fatalf("state %+v", cs)
	}
	id := strings.TrimPrefix(cs.ContainerID, "oci://")
	if args := rt.configs[id].Args; len(args) != 1 || args[0] != "--level=debug" {
		t.Fatalf("args %v", args)
	}

	// First crash: restarted at once. Second crash: CrashLoopBackOff.
	rt.exit(id, 1)
	w.sync(ctx)
	cs = onlyStatus(t, w)
	if cs.RestartCount != 1 || cs.State.Running == nil || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 1 {
		t.Fatalf("after first crash %+v", cs)
	}
	rt.exit(strings.TrimPrefix(cs.ContainerID, "oci://"), 2)
	w.sync(ctx)
	cs = onlyStatus(t, w)
	if cs.RestartCount != 1 || cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonCrashLoop || cs.LastTerminationState.Terminated.ExitCode != 2 {
		t.Fatalf("after second crash %+v", cs)
	}
	if !strings.Contains(cs.State.Waiting.Message, "back-off 1h0m0s restarting failed container=c pod=p_default(uid-1)") {
		t.Fatalf("message %q", cs.State.Waiting.Message)
	}
	w.mu.Lock()
	phase := w.rec.Status.Phase
	w.mu.Unlock()
	if phase != manifests.PodRunning {
		t.Fatalf("crash-looping pod phase %s", phase)
	}

	// The back-off passes: restarted, count 2.
	w.ctrs["c"].restartAt = time.Now().Add(-time.Second)
	w.sync(ctx)
	cs = onlyStatus(t, w)
	if cs.RestartCount != 2 || cs.State.Running == nil {
		t.Fatalf("after back-off %+v", cs)
	}

	// A new image: the container is replaced, counting a restart.
	p2 := testWorkerPod("oci", "img:v2", "Always")
	w.update(p2, 2)
	w.sync(ctx)
	cs = onlyStatus(t, w)
	if cs.RestartCount != 3 || cs.State.Running == nil || cs.Image != "img:v2" {
		t.Fatalf("after image change %+v", cs)
	}
	if got := rt.configs[strings.TrimPrefix(cs.ContainerID, "oci://")].Image; got != "img:v2" {
		t.Fatalf("runtime image %q", got)
	}

	// The runtime forgets everything (agent restart): a new worker from the
	// stored record starts the container again, keeping the restart count.
	rt.forget()
	recs, err := a.db.Pods()
	if err != nil || len(recs) != 1 {
		t.Fatalf("stored pods %v %v", recs, err)
	}
	w2 := newPodWorker(a, recs[0])
	w2.sync(ctx)
	cs = onlyStatus(t, w2)
	if cs.RestartCount != 3 || cs.State.Running == nil {
		t.Fatalf("after runtime restart %+v", cs)
	}

	// Removal: containers and sandbox gone, state and pod dir removed.
	w2.teardown(ctx)
	if len(rt.containers) != 0 || len(rt.sandboxes) != 0 {
		t.Fatalf("left in runtime: %v %v", rt.containers, rt.sandboxes)
	}
	if recs, _ := a.db.Pods(); len(recs) != 0 {
		t.Fatalf("state left: %d pods", len(recs))
	}
}

func TestWorkerNeverAndMissingHandler(t *testing.T) {
	ctx := context.Background()
	rt := newFakeRuntime()
	api := &fakeAPI{objects: map[string]manifests.Object{"configmaps/default/cfg": &manifests.ConfigMap{Data: map[string]string{"level": "x"}}}}
	a := newTestAgent(t, ociRuntime{rt}, api)
	w := newPodWorker(a, &state.Pod{Pod: testWorkerPod("oci", "img:v1", "Never"), Revision: 1})
	w.sync(ctx)
	cs := onlyStatus(t, w)
	rt.exit(strings.TrimPrefix(cs.ContainerID, "oci://"), 0)
	w.sync(ctx)
	w.sync(ctx)
	cs = onlyStatus(t, w)
	if cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || cs.RestartCount != 0 {
		t.Fatalf("never: %+v", cs)
	}
	if w.rec.Status.Phase != manifests.PodSucceeded {
		t.Fatalf("phase %s", w.rec.Status.Phase)
	}

	w3 := newPodWorker(a, &state.Pod{Pod: testWorkerPod("gvisor", "img:v1", "Always"), Revision: 1})
	w3.sync(ctx)
	cs = onlyStatus(t, w3)
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonNoRuntimeHandler || !strings.Contains(cs.State.Waiting.Message, `"gvisor"`) {
		t.Fatalf("missing handler: %+v", cs.State)
	}

	// A wasm module that cannot be resolved: ErrImagePull, then ImagePullBackOff.
	aw := newTestAgent(t, rt, api)
	w4 := newPodWorker(aw, &state.Pod{Pod: testWorkerPod("wasm", "nothere:v1", "Always"), Revision: 1})
	w4.sync(ctx)
	if cs := onlyStatus(t, w4); cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonErrImagePull {
		t.Fatalf("first pull: %+v", cs.State)
	}
	w4.ctrs["c"].retryAt = time.Time{}
	w4.sync(ctx)
	if cs := onlyStatus(t, w4); cs.State.Waiting == nil || cs.State.Waiting.Reason != reasonImagePullBackOff || !strings.Contains(cs.State.Waiting.Message, "nothere:v1") {
		t.Fatalf("second pull: %+v", cs.State)
	}
}

func TestWorkerInitContainersAndFinishedSurviveRestart(t *testing.T) {
	ctx := context.Background()
	rt := newFakeRuntime()
	api := &fakeAPI{objects: map[string]manifests.Object{"configmaps/default/cfg": &manifests.ConfigMap{Data: map[string]string{"level": "x"}}}}
	a := newTestAgent(t, ociRuntime{rt}, api)
	p := testWorkerPod("oci", "img:v1", "Never")
	p.Spec.InitContainers = []manifests.Container{{Name: "setup", Image: "setup:v1"}}
	w := newPodWorker(a, &state.Pod{Pod: p, Revision: 1})
	w.sync(ctx)
	st := w.rec.Status
	if len(rt.containers) != 1 || st.Phase != "Pending" || st.ContainerStatuses[0].State.Waiting == nil || st.ContainerStatuses[0].State.Waiting.Reason != "PodInitializing" {
		t.Fatalf("while initializing: %d containers, status %+v", len(rt.containers), st)
	}
	initID := strings.TrimPrefix(st.InitContainerStatuses[0].ContainerID, "oci://")
	rt.exit(initID, 0)
	w.sync(ctx)
	w.sync(ctx)
	st = w.rec.Status
	if st.Phase != "Running" || st.ContainerStatuses[0].State.Running == nil || !st.InitContainerStatuses[0].Ready {
		t.Fatalf("after init: %+v", st)
	}
	rt.exit(strings.TrimPrefix(st.ContainerStatuses[0].ContainerID, "oci://"), 4)
	w.sync(ctx)
	if w.rec.Status.Phase != "Failed" {
		t.Fatalf("phase %s", w.rec.Status.Phase)
	}

	// After an agent restart the finished pod is not run again.
	rt.forget()
	recs, err := a.db.Pods()
	if err != nil || len(recs) != 1 {
		t.Fatalf("stored pods %v %v", recs, err)
	}
	w2 := newPodWorker(a, recs[0])
	w2.sync(ctx)
	w2.sync(ctx)
	if len(rt.containers) != 0 {
		t.Fatalf("finished pod started again: %v", rt.containers)
	}
	st = w2.rec.Status
	if st.Phase != "Failed" || st.ContainerStatuses[0].State.Terminated == nil || st.ContainerStatuses[0].State.Terminated.ExitCode != 4 {
		t.Fatalf("after restart: %+v", st)
	}
}

func TestWorkerActiveDeadline(t *testing.T) {
	ctx := context.Background()
	rt := newFakeRuntime()
	api := &fakeAPI{objects: map[string]manifests.Object{"configmaps/default/cfg": &manifests.ConfigMap{Data: map[string]string{"level": "x"}}}}
	a := newTestAgent(t, ociRuntime{rt}, api)
	p := testWorkerPod("oci", "img:v1", "Always")
	deadline := int64(60)
	p.Spec.ActiveDeadlineSeconds = &deadline
	w := newPodWorker(a, &state.Pod{Pod: p, Revision: 1})
	w.sync(ctx)
	if w.rec.Status.Phase != "Running" {
		t.Fatalf("phase %s", w.rec.Status.Phase)
	}
	w.rec.StartTime = time.Now().Add(-time.Minute)
	w.sync(ctx)
	st := w.rec.Status
	cs := st.ContainerStatuses[0]
	if st.Phase != "Failed" || st.Reason != "DeadlineExceeded" || cs.State.Terminated == nil {
		t.Fatalf("past the deadline: %+v", st)
	}
	w.sync(ctx)
	for id, c := range rt.containers {
		if c.State != runtime.StateExited {
			t.Fatalf("container %s still %v", id, c.State)
		}
	}
}
