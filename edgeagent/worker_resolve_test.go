package edgeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
)

// tagAPI resolves module references from a map the test changes, and
// counts the lookups.
type tagAPI struct {
	fakeAPI
	mu    sync.Mutex
	tags  map[string]string
	calls map[string]int
}

func (a *tagAPI) ResolveModule(_ context.Context, ref string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls[ref]++
	if d, ok := a.tags[ref]; ok {
		return d, nil
	}
	return "", client.Errorf(client.CodeNotFound, "module %q not found", ref)
}

func (a *tagAPI) set(ref, digest string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tags[ref] = digest
}

func (a *tagAPI) lookups(ref string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[ref]
}

// cachedModule puts a module in the agent's cache and returns its digest.
func cachedModule(t *testing.T, a *Agent, content string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	d := hex.EncodeToString(sum[:])
	if err := os.MkdirAll(a.mods.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.mods.path(d), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// tagAgent returns an agent whose API resolves tags from a map, with two
// modules in its cache and app:v1 resolving to the first.
func tagAgent(t *testing.T) (*fakeRuntime, *tagAPI, *Agent, string, string) {
	rt := newFakeRuntime()
	api := &tagAPI{fakeAPI: fakeAPI{objects: map[string]manifests.Object{
		"configmaps/default/cfg": &manifests.ConfigMap{Data: map[string]string{"level": "x"}}}},
		tags: map[string]string{}, calls: map[string]int{}}
	a := newTestAgent(t, rt, api)
	d1 := cachedModule(t, a, "\x00asm v1")
	d2 := cachedModule(t, a, "\x00asm v2")
	api.set("app:v1", d1)
	return rt, api, a, d1, d2
}

// The module reference of a new pod is looked up once, while the sandbox
// is made, and with imagePullPolicy Always a lookup's answer serves only
// the start it was made for: a tag moved before the next start is seen.
func TestWorkerResolvesModuleOncePerStart(t *testing.T) {
	ctx := context.Background()
	rt, api, a, d1, d2 := tagAgent(t)

	w := newPodWorker(a, &state.Pod{Pod: pullAlways(testWorkerPod("wasm", "app:v1", "Always")), Revision: 1})
	w.sync(ctx)
	cs := onlyStatus(t, w)
	if cs.State.Running == nil || cs.ImageID != "sha256:"+d1 {
		t.Fatalf("first start: %+v", cs)
	}
	if n := api.lookups("app:v1"); n != 1 {
		t.Fatalf("%d lookups for one start, want 1", n)
	}
	if len(w.resolving) != 0 {
		t.Fatalf("lookups left after the sync: %v", w.resolving)
	}

	// The tag moves; the running container is left alone, with no lookup.
	api.set("app:v1", d2)
	w.sync(ctx)
	if n := api.lookups("app:v1"); n != 1 {
		t.Fatalf("%d lookups while running, want 1", n)
	}

	// A new pod of the same image starts from the moved tag.
	p := pullAlways(testWorkerPod("wasm", "app:v1", "Always"))
	p.Name, p.UID = "q", "uid-2"
	w2 := newPodWorker(a, &state.Pod{Pod: p, Revision: 2})
	w2.sync(ctx)
	cs = onlyStatus(t, w2)
	if cs.State.Running == nil || cs.ImageID != "sha256:"+d2 {
		t.Fatalf("new pod after the tag moved: %+v", cs)
	}

	// A pod with an init container: the app container looks its module
	// up when it starts, not when the sandbox is made.
	p = pullAlways(testWorkerPod("wasm", "app:v1", "Never"))
	p.Name, p.UID = "r", "uid-3"
	p.Spec.InitContainers = []manifests.Container{{Name: "setup", Image: "setup:v1"}}
	api.set("setup:v1", d1)
	w3 := newPodWorker(a, &state.Pod{Pod: p, Revision: 3})
	before := api.lookups("app:v1")
	w3.sync(ctx)
	if n := api.lookups("app:v1"); n != before {
		t.Fatalf("app module looked up while the init container runs (%d lookups)", n-before)
	}
	var initID string
	for id, c := range rt.containers {
		if c.Name == "setup" {
			initID = id
		}
	}
	api.set("app:v1", d1)
	rt.exit(initID, 0)
	w3.sync(ctx)
	w3.sync(ctx)
	st := w3.rec.Status
	if len(st.ContainerStatuses) != 1 || st.ContainerStatuses[0].State.Running == nil || !strings.HasSuffix(st.ContainerStatuses[0].ImageID, d1) {
		t.Fatalf("app container after init: %+v", st.ContainerStatuses)
	}
}

// pullAlways sets imagePullPolicy Always on p's containers.
func pullAlways(p *manifests.Pod) *manifests.Pod {
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].ImagePullPolicy = "Always"
	}
	return p
}

// With IfNotPresent a new pod uses what the node resolved the tag to
// before, with the module here, without asking the control plane (as the
// kubelet with an image tag it has); Always asks again.
func TestWorkerIfNotPresentUsesResolvedTag(t *testing.T) {
	ctx := context.Background()
	_, api, a, d1, d2 := tagAgent(t)
	start := func(name, policy string) manifests.ContainerStatus {
		t.Helper()
		p := testWorkerPod("wasm", "app:v1", "Always")
		p.Name, p.UID = name, "uid-"+name
		p.Spec.Containers[0].ImagePullPolicy = policy
		w := newPodWorker(a, &state.Pod{Pod: p, Revision: 1})
		w.sync(ctx)
		return onlyStatus(t, w)
	}
	if cs := start("a", "IfNotPresent"); cs.State.Running == nil || cs.ImageID != "sha256:"+d1 {
		t.Fatalf("first pod: %+v", cs)
	}
	if n := api.lookups("app:v1"); n != 1 {
		t.Fatalf("%d lookups for the first pod, want 1", n)
	}
	api.set("app:v1", d2) // the tag moves
	if cs := start("b", "IfNotPresent"); cs.State.Running == nil || cs.ImageID != "sha256:"+d1 {
		t.Fatalf("IfNotPresent after the tag moved: %+v, want the node's %s", cs, d1)
	}
	if n := api.lookups("app:v1"); n != 1 {
		t.Fatalf("%d lookups after an IfNotPresent pod, want still 1", n)
	}
	if cs := start("c", "Always"); cs.State.Running == nil || cs.ImageID != "sha256:"+d2 {
		t.Fatalf("Always after the tag moved: %+v, want %s", cs, d2)
	}
	if n := api.lookups("app:v1"); n != 2 {
		t.Fatalf("%d lookups after an Always pod, want 2", n)
	}
	// What Always found is what the node has now.
	if cs := start("d", "IfNotPresent"); cs.ImageID != "sha256:"+d2 {
		t.Fatalf("IfNotPresent after Always: %+v, want %s", cs, d2)
	}
}
