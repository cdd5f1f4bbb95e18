package edgectl

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane"
)

// lcsLen is the length of a longest common subsequence, by dynamic
// programming: the reference the Myers diff is checked against.
func lcsLen(a, b []string) int {
	dp := make([][]int, len(a)+1)
	for i := range dp {
		dp[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	return dp[0][0]
}

func TestLineDiffIsMinimalAndCorrect(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randLines := func() []string {
		n := rng.IntN(12)
		out := make([]string, n)
		for i := range out {
			out[i] = string(rune('a' + rng.IntN(4)))
		}
		return out
	}
	for iter := 0; iter < 3000; iter++ {
		a, b := randLines(), randLines()
		ops := lineDiff(a, b)
		var gotA, gotB []string
		edits := 0
		for _, op := range ops {
			switch op.kind {
			case ' ':
				gotA, gotB = append(gotA, op.line), append(gotB, op.line)
			case '-':
				gotA = append(gotA, op.line)
				edits++
			case '+':
				gotB = append(gotB, op.line)
				edits++
			}
		}
		if strings.Join(gotA, "") != strings.Join(a, "") || strings.Join(gotB, "") != strings.Join(b, "") {
			t.Fatalf("diff of %q and %q does not rebuild them: %v", a, b, ops)
		}
		if want := len(a) + len(b) - 2*lcsLen(a, b); edits != want {
			t.Fatalf("diff of %q and %q has %d edits, want the minimum %d", a, b, edits, want)
		}
	}
}

func TestWriteUnifiedDiff(t *testing.T) {
	a := strings.Split("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", " ")
	b := append([]string(nil), a...)
	b[1] = "two"                  // line 2 changed
	b = append(b[:15], b[16:]...) // line 16 deleted
	b = append(b, "21")           // line 21 added
	var buf bytes.Buffer
	writeUnifiedDiff(&buf, "live/x", "merged/x", a, b)
	want := `diff -u -N live/x merged/x
--- live/x
+++ merged/x
@@ -1,5 +1,5 @@
 1
-2
+two
 3
 4
 5
@@ -13,8 +13,8 @@
 13
 14
 15
-16
 17
 18
 19
 20
+21
`
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	writeUnifiedDiff(&buf, "live/x", "merged/x", nil, []string{"a", "b"})
	if want := "diff -u -N live/x merged/x\n--- live/x\n+++ merged/x\n@@ -0,0 +1,2 @@\n+a\n+b\n"; buf.String() != want {
		t.Errorf("new file:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	writeUnifiedDiff(&buf, "a", "b", a, a)
	if buf.Len() != 0 {
		t.Errorf("equal inputs printed %q", buf.String())
	}
}

const diffDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      runtimeClassName: wasm
      containers:
      - {name: web, image: "web:v1"}
`

func TestDiff(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)

	// A new object is diffed against nothing: exit 1.
	r := ctl(cmManifest("settings", "1"), "diff", "-f", "-")
	if r.code != 1 || r.stderr != "" {
		t.Fatalf("new object: %+v", r)
	}
	for _, want := range []string{
		"diff -u -N live/v1.ConfigMap.default.settings merged/v1.ConfigMap.default.settings\n",
		"--- live/v1.ConfigMap.default.settings\n+++ merged/v1.ConfigMap.default.settings\n@@ -0,0 +1,",
		"+kind: ConfigMap\n", "+  level: \"1\"\n", "+  name: settings\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("new object: diff lacks %q:\n%s", want, r.stdout)
		}
	}
	// Diff stores nothing.
	if r := ctl("", "get", "cm", "settings"); r.code != 1 {
		t.Errorf("diff created the object: %+v", r)
	}
	// Applied: no differences, exit 0, nothing printed (status,
	// resourceVersion, uid, creationTimestamp are left out).
	mustOK(t, ctl(cmManifest("settings", "1"), "apply", "-f", "-"), "apply")
	if r := ctl(cmManifest("settings", "1"), "diff", "-f", "-"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("unchanged: %+v", r)
	}
	// A change: exactly the changed line.
	r = ctl(cmManifest("settings", "2"), "diff", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stdout, "-  level: \"1\"\n+  level: \"2\"\n") || strings.Contains(r.stdout, "resourceVersion") {
		t.Errorf("changed: %+v", r)
	}
	// A Deployment: apply's defaults are part of what is compared, so
	// an unchanged manifest shows nothing, and a new replica count one line.
	mustOK(t, ctl(strings.Replace(diffDeployment, "%d", "2", 1), "apply", "-f", "-"), "apply deployment")
	if r := ctl(strings.Replace(diffDeployment, "%d", "2", 1), "diff", "-f", "-"); r.code != 0 || r.stdout != "" {
		t.Errorf("unchanged deployment: %+v", r)
	}
	r = ctl(strings.Replace(diffDeployment, "%d", "5", 1), "diff", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stdout, "--- live/apps.v1.Deployment.default.web\n") ||
		!strings.Contains(r.stdout, "-  replicas: 2\n+  replicas: 5\n") || strings.Count(r.stdout, "\n-") != 2 /* ---, and the line */ {
		t.Errorf("deployment replicas:\n%s", r.stdout)
	}
	// Secrets: values hidden unless --show-secrets.
	secret := "apiVersion: v1\nkind: Secret\nmetadata: {name: token}\nstringData: {key: %s, same: s}\n"
	mustOK(t, ctl(strings.Replace(secret, "%s", "hunter2", 1), "apply", "-f", "-"), "apply secret")
	r = ctl(strings.Replace(secret, "%s", "swordfish", 1), "diff", "-f", "-")
	if r.code != 1 || strings.Contains(r.stdout, "hunter2") || strings.Contains(r.stdout, "swordfish") ||
		strings.Contains(r.stdout, "aHVudGVyMg") || !strings.Contains(r.stdout, "-  key: '*** (before)'\n+  key: '*** (after)'\n") {
		t.Errorf("secret redacted:\n%s", r.stdout)
	}
	r = ctl(strings.Replace(secret, "%s", "swordfish", 1), "diff", "-f", "-", "--show-secrets")
	if r.code != 1 || !strings.Contains(r.stdout, "-  key: hunter2\n+  key: swordfish\n") {
		t.Errorf("secret shown:\n%s", r.stdout)
	}
	// Errors: exit 2.
	if r := ctl("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nbogus: 1\n", "diff", "-f", "-"); r.code != 2 || !strings.Contains(r.stderr, "bogus") {
		t.Errorf("bad manifest: %+v", r)
	}
	if r := ctl("", "diff"); r.code != 2 || !strings.Contains(r.stderr, "must specify one of -f") {
		t.Errorf("no -f: %+v", r)
	}
	if r := ctl("", "diff", "-f", "x", "--bogus"); r.code != 2 || !strings.Contains(r.stderr, "unknown flag: --bogus") {
		t.Errorf("bad flag: %+v", r)
	}
	if r := runCtl(t, cmManifest("settings", "1"), "--server", closedURL(t), "diff", "-f", "-"); r.code != 2 || !strings.Contains(r.stderr, "Unable to connect") {
		t.Errorf("no server: %+v", r)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	mustOK(t, ctl(cmManifest("keep", "1")+"---\n"+strings.Replace(diffDeployment, "%d", "2", 1), "apply", "-f", "-"), "apply")
	before := mustOK(t, ctl("", "get", "cm,deploy", "-o", "json"), "get before")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "cm", "keep", "--dry-run"}, "configmap \"keep\" deleted (dry run)\n"},
		{[]string{"delete", "cm", "keep", "--dry-run=server"}, "configmap \"keep\" deleted (server dry run)\n"},
		{[]string{"delete", "cm", "-l", "app=demo", "--dry-run=client"}, "configmap \"keep\" deleted (dry run)\n"},
		{[]string{"delete", "cm", "keep", "--dry-run", "-o", "name"}, "configmap/keep\n"},
		{[]string{"scale", "deployment/web", "--replicas=5", "--dry-run"}, "deployment.apps/web scaled (dry run)\n"},
		{[]string{"scale", "deployment/web", "--replicas=5", "--dry-run=server"}, "deployment.apps/web scaled (server dry run)\n"},
		{[]string{"label", "cm", "keep", "tier=x", "--dry-run"}, "configmap/keep labeled (dry run)\n"},
		{[]string{"label", "cm", "keep", "tier=x", "--dry-run=server"}, "configmap/keep labeled (server dry run)\n"},
		{[]string{"label", "cm", "keep", "app=demo", "--dry-run=server"}, "configmap/keep not labeled (server dry run)\n"},
	} {
		if out := mustOK(t, ctl("", tc.args...), strings.Join(tc.args, " ")); out != tc.want {
			t.Errorf("%s: %q, want %q", strings.Join(tc.args, " "), out, tc.want)
		}
	}
	if after := mustOK(t, ctl("", "get", "cm,deploy", "-o", "json"), "get after"); after != before {
		t.Errorf("a dry run changed something:\nbefore %s\nafter %s", before, after)
	}
	// Dry runs still report what a real run would refuse.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "cm", "missing", "--dry-run"}, `configmaps "missing" not found`},
		{[]string{"scale", "deployment/web", "--replicas=5", "--current-replicas=3", "--dry-run=server"}, "expected replicas to be 3, was 2"},
		{[]string{"label", "cm", "keep", "app=other", "--dry-run=server"}, "'app' already has a value (demo), and --overwrite is false"},
		{[]string{"label", "cm", "keep", "bad/key/x=1", "--dry-run=server"}, "invalid label key"},
		{[]string{"delete", "cm", "keep", "--dry-run=maybe"}, "invalid dry-run value (maybe)"},
	} {
		if r := ctl("", tc.args...); r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: %+v, want %q", strings.Join(tc.args, " "), r, tc.want)
		}
	}
	if out := mustOK(t, ctl("", "delete", "cm", "missing", "--dry-run", "--ignore-not-found"), "ignore-not-found"); out != "" {
		t.Errorf("--ignore-not-found dry run: %q", out)
	}
	// And the real thing still works.
	if out := mustOK(t, ctl("", "delete", "cm", "keep"), "delete"); out != "configmap \"keep\" deleted\n" {
		t.Errorf("delete: %q", out)
	}
}

// startSecureControlPlane runs the control plane with authentication on and
// returns its URL and the admin and readonly creds files.
func startSecureControlPlane(t *testing.T) (url, admin, readonly string) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- controlplane.Run(ctx, controlplane.Config{DataDir: dir, Listen: "127.0.0.1:0", Auth: true}, func(u string) { urls <- u })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("control plane did not stop")
		}
	})
	select {
	case url = <-urls:
	case err := <-done:
		t.Fatalf("control plane exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("control plane not ready after 30s")
	}
	admin, readonly = filepath.Join(dir, "auth", "admin.creds"), filepath.Join(dir, "auth", "readonly.creds")
	eventually(t, 10*time.Second, func() error {
		if r := runCtl(t, "", "--server", url, "--creds", readonly, "get", "ns", "default"); r.code != 0 {
			return fmt.Errorf("readonly get: %+v", r)
		}
		return nil
	})
	return url, admin, readonly
}

// With credentials that may not apply (no server dry run), diff merges
// locally as the server would: the same result.
func TestDiffReadOnlyMergesLocally(t *testing.T) {
	url, admin, readonly := startSecureControlPlane(t)
	as := func(creds, stdin string, args ...string) ctlResult {
		return runCtl(t, stdin, append([]string{"--server", url, "--creds", creds}, args...)...)
	}
	deploy := func(n string) string { return strings.Replace(diffDeployment, "%d", n, 1) }
	mustOK(t, as(admin, deploy("2")+"---\n"+podManifest2("solo", "n1"), "apply", "-f", "-"), "apply")
	// Proof that the server refuses the dry run of these credentials.
	if r := as(readonly, deploy("2"), "apply", "-f", "-", "--dry-run=server"); r.code != 1 || !strings.Contains(r.stderr, "Forbidden") {
		t.Fatalf("readonly server dry run: %+v", r)
	}
	if r := as(readonly, deploy("2")+"---\n"+podManifest2("solo", ""), "diff", "-f", "-"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("unchanged, merged locally: %+v", r)
	}
	r := as(readonly, deploy("3"), "diff", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stdout, "-  replicas: 2\n+  replicas: 3\n") {
		t.Errorf("changed, merged locally: %+v", r)
	}
	r = as(readonly, cmManifest("fresh", "1"), "diff", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stdout, "@@ -0,0 +1,") {
		t.Errorf("new, merged locally: %+v", r)
	}
}

// podManifest2 is a pod bound to node (or not bound when node is "").
func podManifest2(name, node string) string {
	s := "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n"
	if node != "" {
		s += "  nodeName: " + node + "\n"
	}
	return s + "  runtimeClassName: wasm\n  containers:\n  - {name: c, image: \"m:v1\"}\n"
}
