package dashboard_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
)

// chromium finds Debian's chromium. Missing, the test fails in CI (CI set:
// `make deps` installs it) and is skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: the dashboard's browser test needs Debian's chromium package (make deps installs it)")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or make deps): skipping the browser test")
	return ""
}

// TestDashboardInChromium starts a control plane with the dashboard (token
// auth on) and one agent on the fake runtime, opens the dashboard in
// headless Chromium and checks, on the one open page (no reload): the node
// row, a pod applied meanwhile (pushed by the live stream), screenshots of
// those rows against one of the empty table, a full-page screenshot, a
// fleet Rollout's wave progress on the rollouts tab, and an Event created
// while the events tab is open arriving by the live stream. The screenshots
// are kept in $EDGE_ARTIFACTS, or when the test fails.
func TestDashboardInChromium(t *testing.T) {
	chrome := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	shots := artifactDir(t)

	// Control plane with the dashboard on a random loopback port.
	url, base, token := startControlPlane(t, ctx, dir)

	// One agent on the fake runtime.
	const nodeName, podName = "edge-browser-1", "hello-dashboard"
	nc, err := messaging.Connect(ctx, url, "agent "+nodeName)
	if err != nil {
		t.Fatal(err)
	}
	rts := map[string]runtime.Runtime{}
	for _, h := range []string{fake.HandlerName, manifests.RuntimeOCI, manifests.RuntimeWasm} {
		rts[h] = fake.New(h)
	}
	agentCtx, agentCancel := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- edgeagent.Run(agentCtx, nc, edgeagent.Config{
			NodeName: nodeName, DataDir: filepath.Join(dir, "agent"), Address: "10.200.0.1",
			HeartbeatInterval: 200 * time.Millisecond, Runtimes: rts, PollInterval: 100 * time.Millisecond, PassImages: true,
		})
	}()
	t.Cleanup(func() { // before the control plane's cleanup
		agentCancel()
		if err := <-agentDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
	})
	cl, err := messaging.Connect(ctx, url, "test client")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	api := client.New(cl)

	// Headless Chromium with the token on every request of the page, and
	// a record of the live stream's batches (window.edgeTestBatches).
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer allocCancel()
	bctx, bcancel := chromedp.NewContext(allocCtx)
	defer bcancel()
	setup := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recordStream}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": "Bearer " + token},
		})
		return err
	})
	if err := chromedp.Do(bctx, setup, chromedp.Navigate(base)); err != nil {
		t.Fatalf("open %s in chromium: %v", base, err)
	}
	// run runs an action bounded by the test's deadline.
	run := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		dl, _ := ctx.Deadline()
		c, cancel := context.WithDeadline(bctx, dl)
		defer cancel()
		if _, err := chromedp.Run(c, a); err != nil {
			text, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
		}
	}
	waitFor := func(what, expr string) {
		t.Helper()
		run(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second)))
	}
	// screenshot takes a PNG of the element sel and keeps it as name.
	screenshot := func(name, sel string) []byte {
		t.Helper()
		dl, _ := ctx.Deadline()
		c, cancel := context.WithDeadline(bctx, dl)
		defer cancel()
		shot, err := chromedp.Run(c, chromedp.Screenshot(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("screenshot of %s: %v", sel, err)
		}
		keepShot(t, shots, name, shot)
		return shot
	}
	// A marker that a reload would lose.
	run("set marker", chromedp.Evaluate[chromedp.Void](`window.edgeTestMarker = 42`))
	checkNoReload := func(what string) {
		t.Helper()
		marker, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.edgeTestMarker || 0`))
		if err != nil || marker != 42 {
			t.Errorf("the page was reloaded (marker %d, %v): %s should arrive by the live stream", marker, err, what)
		}
	}

	nodeRow := fmt.Sprintf(`#table-nodes tr[data-name=%q]`, nodeName)
	waitFor("node row online", fmt.Sprintf(`(document.querySelector(%q)||{innerText:''}).innerText.includes('online')`, nodeRow))
	waitFor("live stream connected", `document.getElementById('live').classList.contains('on')`)
	nodeShot := screenshot("node-row.png", nodeRow)
	run("open the pods tab", chromedp.Click(chromedp.CSS(`#tabs a[data-tab="pods"]`)))
	waitFor("empty pods table", `!!document.querySelector('#table-pods td.empty')`)
	emptyShot := screenshot("empty-row.png", `#table-pods tbody tr`)

	p := &manifests.Pod{}
	p.Namespace, p.Name = "default", podName
	p.Spec.Containers = []manifests.Container{{Name: "app", Image: "fake://run"}}
	if _, _, err := api.Apply(ctx, p); err != nil {
		t.Fatalf("apply pod: %v", err)
	}
	podRow := fmt.Sprintf(`#table-pods tr[data-name=%q]`, podName)
	waitFor("pod row running on the node", fmt.Sprintf(
		`(r => r && r.innerText.includes(%q) && r.innerText.includes('Running'))(document.querySelector(%q))`, nodeName, podRow))
	checkNoReload("the pod")
	podShot := screenshot("pod-row.png", podRow)
	checkRowShot(t, "empty pods table", emptyShot, nil)
	checkRowShot(t, "node row", nodeShot, emptyShot)
	checkRowShot(t, "pod row", podShot, emptyShot)

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	keepShot(t, shots, "dashboard.png", shot)
	checkScreenshot(t, shot)
	text, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{nodeName, podName, "Running", "1 online"} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q:\n%s", want, text)
		}
	}

	// A fleet Rollout of a DaemonSet: its waves on the rollouts tab.
	applyYAML(t, ctx, api, dsYAML)
	controllertest.Eventually(t, 60*time.Second, func() error {
		pods, _, err := api.List(ctx, "pods", "default", "app=browser-ds")
		if err != nil {
			return err
		}
		for _, o := range pods {
			if p := o.(*manifests.Pod); p.Spec.NodeName == nodeName && p.Status.Phase == "Running" {
				return nil
			}
		}
		return fmt.Errorf("no Running pod of DaemonSet browser-ds on %s: %d pods", nodeName, len(pods))
	})
	applyYAML(t, ctx, api, rolloutYAML)
	run("open the rollouts tab", chromedp.Click(chromedp.CSS(`#tabs a[data-tab="rollouts"]`)))
	waitFor("rollout wave progress", `(r => r && /wave 1\/1 .*1\/1 nodes ready/.test(r.innerText))(document.querySelector('#table-rollouts tr[data-name="browser-ds-v2"]'))`)
	screenshot("rollout-row.png", `#table-rollouts tr[data-name="browser-ds-v2"]`)
	checkNoReload("the rollout")

	// The scheduler's Event about the pod is on the events tab; an Event
	// created while the tab is open arrives by the live stream.
	run("open the events tab", chromedp.Click(chromedp.CSS(`#tabs a[data-tab="events"]`)))
	waitFor("Scheduled event", fmt.Sprintf(
		`(t => t && t.innerText.includes('Scheduled') && t.innerText.includes(%q))(document.getElementById('table-events'))`, "Pod/default/"+podName))
	const reason, message = "BrowserCheck", "created while the events tab is open"
	ev := &manifests.Event{Reason: reason, Message: message, Type: manifests.EventNormal, LastTimestamp: time.Now().UTC()}
	ev.Namespace, ev.Name = "default", podName+".browser-check"
	ev.InvolvedObject = manifests.ObjectReference{Kind: "Pod", Namespace: "default", Name: podName}
	if _, _, err := api.Apply(ctx, ev); err != nil {
		t.Fatalf("apply event: %v", err)
	}
	waitFor("new event row", fmt.Sprintf(
		`(r => r && r.innerText.includes(%q) && r.innerText.includes(%q))(document.querySelector('#table-events tr[data-name=%q]'))`, reason, message, ev.Name))
	checkNoReload("the new event")
	// The row may come from a reload of the table that an earlier batch
	// asked for; the stream's own batch with the Event follows.
	waitFor("a live stream batch with the new event", fmt.Sprintf(
		`(window.edgeTestBatches || []).some(b => (b.events || []).some(e => e.reason === %q && e.message === %q))`, reason, message))
	screenshot("events.png", `#table-events`)
}

// recordStream, run before the page's scripts, keeps every batch of the
// page's live stream in window.edgeTestBatches.
const recordStream = `(() => {
  window.edgeTestBatches = [];
  const ES = window.EventSource;
  window.EventSource = function (url, opts) {
    const es = new ES(url, opts);
    es.addEventListener('batch', m => { try { window.edgeTestBatches.push(JSON.parse(m.data)); } catch (e) {} });
    return es;
  };
})();`

const dsYAML = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: browser-ds, namespace: default}
spec:
  selector: {matchLabels: {app: browser-ds}}
  template:
    metadata: {labels: {app: browser-ds}}
    spec: {containers: [{name: c, image: "fake://run"}]}
`

const rolloutYAML = `apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: browser-ds-v2, namespace: default}
spec:
  targetRef: {kind: DaemonSet, name: browser-ds}
  template:
    metadata: {labels: {app: browser-ds}}
    spec: {containers: [{name: c, image: "fake://run", env: [{name: VERSION, value: "2"}]}]}
  waves: [{}]
`

func applyYAML(t *testing.T, ctx context.Context, api *client.Client, doc string) {
	t.Helper()
	objs, err := manifests.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	for _, o := range objs {
		if _, _, err := api.Apply(ctx, o); err != nil {
			t.Fatalf("apply %s: %v", o.GetObjectMeta().Name, err)
		}
	}
}

// artifactDir is where the test's screenshots go: a new directory under
// $EDGE_ARTIFACTS (kept), else a temporary one kept only if the test fails.
func artifactDir(t *testing.T) string {
	t.Helper()
	parent := os.Getenv("EDGE_ARTIFACTS")
	if parent != "" {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			t.Fatalf("EDGE_ARTIFACTS: %v", err)
		}
	}
	dir, err := os.MkdirTemp(parent, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatalf("screenshot directory: %v", err)
	}
	t.Cleanup(func() {
		switch {
		case t.Failed():
			t.Logf("screenshots kept in %s", dir)
		case parent != "":
			t.Logf("screenshots in %s", dir)
		default:
			os.RemoveAll(dir)
		}
	})
	return dir
}

func keepShot(t *testing.T, dir, name string, shot []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), shot, 0o644); err != nil {
		t.Fatalf("keep screenshot: %v", err)
	}
}

// checkRowShot checks the screenshot of a table row: a plausible size,
// dark text on a light background, and, unless it is the empty table's
// row (empty nil), a green status badge that the empty row has not and
// pixels that differ from it.
func checkRowShot(t *testing.T, what string, shot, empty []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Errorf("%s: screenshot is not a PNG: %v", what, err)
		return
	}
	b := img.Bounds()
	if b.Dx() < 400 || b.Dy() < 15 || b.Dy() > 200 {
		t.Errorf("%s: screenshot is %dx%d, not a table row", what, b.Dx(), b.Dy())
	}
	text := countPixels(img, func(r, g, b uint8) bool { return lum8(r, g, b) < 140 })
	light := countPixels(img, func(r, g, b uint8) bool { return lum8(r, g, b) > 230 })
	if text < 40 || light < b.Dx()*b.Dy()/2 {
		t.Errorf("%s: %d dark (text) and %d light pixels of %d: blank or not rendered?", what, text, light, b.Dx()*b.Dy())
	}
	green := countPixels(img, isBadgeGreen)
	if empty == nil {
		if green != 0 {
			t.Errorf("%s: %d pixels of a status badge", what, green)
		}
		return
	}
	if green < 100 {
		t.Errorf("%s: %d pixels of the green status badge (#dcfce7), want a badge", what, green)
	}
	e, err := png.Decode(bytes.NewReader(empty))
	if err != nil {
		t.Errorf("empty row: %v", err)
		return
	}
	if e.Bounds() == b {
		diff := countDiff(img, e)
		if diff < b.Dx()*b.Dy()/100 {
			t.Errorf("%s: only %d pixels differ from the empty table's row", what, diff)
		}
	}
}

// isBadgeGreen is the background of an online/Running badge (#dcfce7).
func isBadgeGreen(r, g, b uint8) bool {
	near := func(v, want uint8) bool { return v >= want-6 && v <= want+3 }
	return near(r, 0xdc) && near(g, 0xfc) && near(b, 0xe7)
}

func lum8(r, g, b uint8) int { return (299*int(r) + 587*int(g) + 114*int(b)) / 1000 }

func countPixels(img image.Image, f func(r, g, b uint8) bool) int {
	n := 0
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if f(uint8(r>>8), uint8(g>>8), uint8(b>>8)) {
				n++
			}
		}
	}
	return n
}

func countDiff(a, b image.Image) int {
	n := 0
	bd := a.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				n++
			}
		}
	}
	return n
}

// checkScreenshot decodes the PNG and checks it shows something: a
// plausible size and many colours, not a blank page.
func checkScreenshot(t *testing.T, shot []byte) {
	t.Helper()
	if len(shot) < 10<<10 {
		t.Errorf("screenshot is only %d bytes", len(shot))
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 640 || b.Dy() < 400 {
		t.Errorf("screenshot is %dx%d", b.Dx(), b.Dy())
	}
	colours := map[[4]uint32]int{}
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}]++
		}
	}
	if len(colours) < 16 {
		t.Errorf("screenshot has %d colours: blank page?", len(colours))
	}
	// The header bar is dark and the page light: both must be there.
	if dark, light := lum(img, image.Pt(b.Min.X+5, b.Min.Y+5)), lum(img, image.Pt(b.Min.X+5, b.Max.Y-5)); dark >= light {
		t.Errorf("expected a dark header over a light page, got luminance %d over %d", dark, light)
	}
}

func lum(img image.Image, p image.Point) uint32 {
	r, g, b, _ := img.At(p.X, p.Y).RGBA()
	return (299*r + 587*g + 114*b) / 1000
}
