package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/nodes"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/natstest"
)

// eventually calls f every 20ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newStore(t *testing.T) *store.Store {
	t.Helper()
	return store.New(natstest.Start(t, "dashboard-test").Buckets.Objects)
}

// serve runs a dashboard over st behind an httptest server.
func serve(t *testing.T, st *store.Store, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); cancel(); <-done })
	return s, hs
}

func node(name string, ready bool, taints ...string) *manifests.Node {
	n := &manifests.Node{}
	n.Name = name
	status := manifests.ConditionTrue
	if !ready {
		status = "Unknown"
	}
	n.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: status, LastHeartbeatTime: time.Now().UTC().Add(-5 * time.Second).Truncate(time.Second)}}
	n.Status.NodeInfo = manifests.NodeSystemInfo{Architecture: "arm64", OperatingSystem: "linux"}
	for _, k := range taints {
		n.Spec.Taints = append(n.Spec.Taints, manifests.Taint{Key: k, Effect: "NoExecute"})
	}
	return n
}

func pod(name, nodeName, phase string) *manifests.Pod {
	p := &manifests.Pod{}
	p.Namespace, p.Name = "default", name
	p.Spec.NodeName = nodeName
	p.Spec.Containers = []manifests.Container{{Name: "app", Image: "fake://run"}}
	p.Status.Phase = phase
	p.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "app", Ready: phase == manifests.PodRunning, RestartCount: 2}}
	return p
}

func create(t *testing.T, st *store.Store, objs ...manifests.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, o := range objs {
		if _, err := st.Create(ctx, o); err != nil {
			t.Fatalf("create %s: %v", o.GetObjectMeta().Name, err)
		}
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return res.StatusCode
}

func TestAPINodesPodsAndSummary(t *testing.T) {
	st := newStore(t)
	create(t, st, node("edge-1", true), node("edge-2", false, nodes.TaintNotReady), node("edge-3", false, nodes.TaintUnreachable),
		pod("web-1", "edge-1", manifests.PodRunning), pod("web-2", "edge-1", manifests.PodRunning), pod("job-1", "edge-3", manifests.PodSucceeded),
		pod("waiting", "", ""))
	_, hs := serve(t, st, Config{Dev: true})

	var sum Summary
	eventually(t, 10*time.Second, func() error {
		getJSON(t, hs.URL+"/api/summary", &sum)
		if !sum.Synced || sum.Nodes != 3 || sum.Pods != 4 {
			return fmt.Errorf("summary %+v", sum)
		}
		return nil
	})
	if sum.Online != 1 || sum.Offline != 2 || sum.NodeState[NodeUnreachable] != 1 || sum.NodeState[NodeNotReady] != 1 {
		t.Errorf("node counts: %+v", sum)
	}
	if sum.PodPhase[manifests.PodRunning] != 2 || sum.PodPhase[manifests.PodPending] != 1 || sum.PodPhase[manifests.PodSucceeded] != 1 {
		t.Errorf("pod phases: %v", sum.PodPhase)
	}

	var nodesPage Page[NodeRow]
	getJSON(t, hs.URL+"/api/nodes", &nodesPage)
	if nodesPage.Total != 3 || len(nodesPage.Items) != 3 {
		t.Fatalf("nodes: %+v", nodesPage)
	}
	n1 := nodesPage.Items[0]
	if n1.Name != "edge-1" || !n1.Online || n1.Pods != 2 || n1.Arch != "arm64" || n1.SeenAgo < 5 || n1.LastSeen.IsZero() {
		t.Errorf("edge-1: %+v", n1)
	}
	if s := nodesPage.Items[2]; s.Name != "edge-3" || s.State != NodeUnreachable || s.Online || s.Pods != 1 {
		t.Errorf("edge-3: %+v", s)
	}
	nodesPage = Page[NodeRow]{}
	getJSON(t, hs.URL+"/api/nodes?state=offline", &nodesPage)
	if nodesPage.Total != 2 {
		t.Errorf("offline nodes: %+v", nodesPage)
	}
	nodesPage = Page[NodeRow]{}
	getJSON(t, hs.URL+"/api/nodes?state=NotReady", &nodesPage)
	if nodesPage.Total != 1 || nodesPage.Items[0].Name != "edge-2" {
		t.Errorf("NotReady nodes: %+v", nodesPage)
	}

	var pods Page[PodRow]
	getJSON(t, hs.URL+"/api/pods?node=edge-1", &pods)
	if pods.Total != 2 || pods.Items[0].Name != "web-1" || pods.Items[0].Restarts != 2 || pods.Items[0].Ready != "1/1" || pods.Items[0].Status != manifests.PodRunning {
		t.Errorf("pods on edge-1: %+v", pods)
	}
	pods = Page[PodRow]{}
	getJSON(t, hs.URL+"/api/pods?q=wait", &pods)
	if pods.Total != 1 || pods.Items[0].Phase != manifests.PodPending || pods.Items[0].Node != "" {
		t.Errorf("pods matching wait: %+v", pods)
	}
	pods = Page[PodRow]{}
	getJSON(t, hs.URL+"/api/pods?offset=1&limit=2", &pods)
	if pods.Total != 4 || len(pods.Items) != 2 || pods.Items[0].Name != "waiting" {
		t.Errorf("pods page 2: %+v", pods)
	}

	for _, bad := range []string{"/api/nodes?limit=0", "/api/nodes?limit=5000", "/api/pods?offset=-1", "/api/nodes?state=sleepy"} {
		if code := getJSON(t, hs.URL+bad, nil); code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, code)
		}
	}
	res, err := http.Post(hs.URL+"/api/nodes", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405 (read-only)", res.StatusCode)
	}
}

func TestAPIWorkloadsRolloutsEvents(t *testing.T) {
	st := newStore(t)
	three := int32(3)
	d := &manifests.Deployment{}
	d.Namespace, d.Name = "default", "web"
	d.Spec.Replicas = &three
	d.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	d.Spec.Template.Labels = map[string]string{"app": "web"}
	d.Spec.Template.Spec.Containers = []manifests.Container{{Name: "app", Image: "fake://run"}}
	d.Status = manifests.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2}
	ro := &manifests.Rollout{}
	ro.Namespace, ro.Name = "default", "agent-v2"
	ro.Spec.TargetRef = manifests.RolloutTargetRef{Kind: "DaemonSet", Name: "agent"}
	now := time.Now().UTC().Truncate(time.Second)
	ro.Status = manifests.RolloutStatus{Phase: manifests.RolloutProgressing, CurrentWave: 1, Waves: []manifests.RolloutWaveStatus{
		{Total: 1, Ready: 1, StartedAt: now, CompletedAt: now},
		{Total: 10, Ready: 4, Failed: 1, Offline: 2, StartedAt: now},
		{Total: 89},
	}}
	ev := &manifests.Event{Reason: "Scheduled", Message: "assigned default/web-1 to edge-1", Type: "Normal", LastTimestamp: now}
	ev.Namespace, ev.Name = "default", "web-1.1"
	ev.InvolvedObject = manifests.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-1"}
	create(t, st, d, ro, ev)
	_, hs := serve(t, st, Config{Dev: true})

	var wl Page[WorkloadRow]
	eventually(t, 10*time.Second, func() error {
		getJSON(t, hs.URL+"/api/workloads", &wl)
		if wl.Total != 1 {
			return fmt.Errorf("workloads %+v", wl)
		}
		return nil
	})
	if w := wl.Items[0]; w.Kind != "Deployment" || w.Desired != 3 || w.Ready != 2 || w.UpToDate != 3 {
		t.Errorf("workload: %+v", w)
	}
	var rp Page[RolloutRow]
	getJSON(t, hs.URL+"/api/rollouts", &rp)
	if rp.Total != 1 {
		t.Fatalf("rollouts: %+v", rp)
	}
	r := rp.Items[0]
	if r.Target != "DaemonSet/agent" || r.Unit != "nodes" || len(r.Waves) != 3 ||
		r.Waves[0].State != "done" || r.Waves[1].State != "in progress" || r.Waves[2].State != "pending" ||
		r.Waves[1].Ready != 4 || r.Waves[1].Offline != 2 {
		t.Errorf("rollout: %+v", r)
	}
	var evs Page[EventRow]
	getJSON(t, hs.URL+"/api/events", &evs)
	if evs.Total != 1 || evs.Items[0].Object != "Pod/default/web-1" || evs.Items[0].Reason != "Scheduled" {
		t.Errorf("events: %+v", evs)
	}
}

// TestStreamSendsChanges reads /api/stream while a pod and an Event are
// created.
func TestStreamSendsChanges(t *testing.T) {
	st := newStore(t)
	s, hs := serve(t, st, Config{Dev: true})
	eventually(t, 10*time.Second, func() error {
		if !s.synced() {
			return fmt.Errorf("not synced")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/api/stream", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := bufio.NewScanner(res.Body)
	if !lines.Scan() || lines.Text() != "retry: 2000" {
		t.Fatalf("first line %q", lines.Text())
	}
	ev := &manifests.Event{Reason: "Started", Message: "started container app", Type: "Normal", LastTimestamp: time.Now().UTC()}
	ev.Namespace, ev.Name = "default", "web-1.2"
	ev.InvolvedObject = manifests.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-1"}
	create(t, st, pod("web-1", "edge-1", manifests.PodRunning), ev)
	changed := map[string]int{}
	var events []EventRow
	for changed["pods"] == 0 || len(events) == 0 {
		if !lines.Scan() {
			t.Fatalf("stream ended: %v (changed %v)", lines.Err(), changed)
		}
		data, ok := strings.CutPrefix(lines.Text(), "data: ")
		if !ok || data == "{}" {
			continue
		}
		var b Batch
		if err := json.Unmarshal([]byte(data), &b); err != nil {
			t.Fatalf("batch %s: %v", data, err)
		}
		for k, v := range b.Changed {
			changed[k] += v
		}
		events = append(events, b.Events...)
	}
	if events[0].Reason != "Started" || events[0].Object != "Pod/default/web-1" {
		t.Errorf("streamed events: %+v", events)
	}
}

func TestTokenAuth(t *testing.T) {
	st := newStore(t)
	dir := t.TempDir()
	s, hs := serve(t, st, Config{DataDir: dir})
	path := filepath.Join(dir, "auth", TokenFileName)
	if s.TokenFile() != path {
		t.Fatalf("token file %q, want %q", s.TokenFile(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %04o, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(data))
	if len(token) != 64 {
		t.Fatalf("token %q: want 64 hex characters", token)
	}
	do := func(path string, set func(*http.Request)) int {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		if set != nil {
			set(req)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("401 without a Basic challenge")
		}
		return res.StatusCode
	}
	for _, p := range []string{"/", "/api/nodes", "/static/app.js", "/api/stream"} {
		if code := do(p, nil); code != http.StatusUnauthorized {
			t.Errorf("GET %s without token: %d, want 401", p, code)
		}
		if code := do(p, func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong-token-0123456789") }); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", p, code)
		}
	}
	if code := do("/api/nodes", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); code != http.StatusOK {
		t.Errorf("bearer token: %d", code)
	}
	if code := do("/", func(r *http.Request) { r.SetBasicAuth("admin", token) }); code != http.StatusOK {
		t.Errorf("basic auth: %d", code)
	}

	// A second start reads the same token.
	s2, err := New(st, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if s2.token != token {
		t.Errorf("token changed on restart")
	}
	// A token file others may read is refused.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st, Config{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("token file 0644: %v", err)
	}
	short := filepath.Join(dir, "short.token")
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(st, Config{TokenFile: short}); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Errorf("short token: %v", err)
	}
	if _, err := New(st, Config{}); err == nil {
		t.Errorf("auth without data dir or token file: no error")
	}
}

func TestPageIsSelfContained(t *testing.T) {
	_, hs := serve(t, newStore(t), Config{Dev: true})
	for _, p := range []string{"/", "/static/app.js", "/static/style.css"} {
		res, err := http.Get(hs.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", p, res.StatusCode)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: CSP %q", p, csp)
		}
		for _, ext := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(string(body), ext) {
				t.Errorf("GET %s refers to an external asset (%q)", p, ext)
			}
		}
	}
}

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Listen: "127.0.0.1:8080"}, true},
		{Config{Listen: "localhost:0"}, true},
		{Config{Listen: "[::1]:8080"}, true},
		{Config{Listen: "0.0.0.0:8080"}, false},
		{Config{Listen: ":8080"}, false},
		{Config{Listen: "0.0.0.0:8080", Dev: true}, true},
		{Config{Listen: "127.0.0.1"}, false},
	} {
		_, err := checkListen(c.cfg)
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.cfg, err)
		}
	}
}

// TestLargeFleetPage measures what a 10,000-node fleet costs the
// dashboard: the page of nodes and the summary stay small.
func TestLargeFleetPage(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 nodes")
	}
	const fleet = 10000
	st := newStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < fleet; i += 8 {
				if _, err := st.Create(context.Background(), node(fmt.Sprintf("edge-%05d", i), i%10 != 0)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, hs := serve(t, st, Config{Dev: true})
	var sum Summary
	eventually(t, 60*time.Second, func() error {
		getJSON(t, hs.URL+"/api/summary", &sum)
		if !sum.Synced || sum.Nodes != fleet {
			return fmt.Errorf("summary: %d nodes, synced %v", sum.Nodes, sum.Synced)
		}
		return nil
	})
	if sum.Offline != fleet/10 {
		t.Errorf("offline %d, want %d", sum.Offline, fleet/10)
	}
	size := func(path string) int {
		res, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return len(b)
	}
	nodesPage, biggest, summary := size("/api/nodes"), size(fmt.Sprintf("/api/nodes?limit=%d", MaxPageSize)), size("/api/summary")
	t.Logf("10,000 nodes: /api/nodes %d bytes, /api/nodes?limit=%d %d bytes, /api/summary %d bytes", nodesPage, MaxPageSize, biggest, summary)
	if nodesPage > 64<<10 || biggest > 512<<10 || summary > 4<<10 {
		t.Errorf("responses too big: %d, %d, %d bytes", nodesPage, biggest, summary)
	}
}
