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
	"github.com/chromedp/chromedp"

	"github.com/edgeorch/edgeorch/client"
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
// headless Chromium, waits for the node, applies a pod and waits for it to
// appear on the open page (pushed by the live stream, no reload), then
// checks a full-page screenshot and the page's text.
func TestDashboardInChromium(t *testing.T) {
	chrome := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()

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

	// Headless Chromium with the token on every request of the page.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer allocCancel()
	bctx, bcancel := chromedp.NewContext(allocCtx)
	defer bcancel()
	setAuth := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": "Bearer " + token},
		})
		return err
	})
	if err := chromedp.Do(bctx, setAuth, chromedp.Navigate(base)); err != nil {
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
		run(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
	}
	// A marker that a reload would lose.
	run("set marker", chromedp.Evaluate[chromedp.Void](`window.edgeTestMarker = 42`))

	waitFor("node row online", fmt.Sprintf(`(document.querySelector('#table-nodes tr[data-name=%q]')||{innerText:''}).innerText.includes('online')`, nodeName))
	waitFor("live stream connected", `document.getElementById('live').classList.contains('on')`)
	run("open the pods tab", chromedp.Click(chromedp.CSS(`#tabs a[data-tab="pods"]`)))
	waitFor("pods table", `!!document.getElementById('table-pods')`)

	p := &manifests.Pod{}
	p.Namespace, p.Name = "default", podName
	p.Spec.Containers = []manifests.Container{{Name: "app", Image: "fake://run"}}
	if _, _, err := api.Apply(ctx, p); err != nil {
		t.Fatalf("apply pod: %v", err)
	}
	waitFor("pod row running on the node", fmt.Sprintf(
		`(r => r && r.innerText.includes(%q) && r.innerText.includes('Running'))(document.querySelector('#table-pods tr[data-name=%q]'))`, nodeName, podName))
	marker, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.edgeTestMarker || 0`))
	if err != nil || marker != 42 {
		t.Errorf("the page was reloaded (marker %d, %v): the pod should arrive by the live stream", marker, err)
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shotFile := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shotFile, shot, 0o644); err != nil {
		t.Fatal(err)
	}
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
	t.Logf("screenshot %s: %d bytes", shotFile, len(shot))

	// The scheduler's Event about the pod is on the events tab.
	run("open the events tab", chromedp.Click(chromedp.CSS(`#tabs a[data-tab="events"]`)))
	waitFor("Scheduled event", fmt.Sprintf(
		`(t => t && t.innerText.includes('Scheduled') && t.innerText.includes(%q))(document.getElementById('table-events'))`, "Pod/default/"+podName))
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
