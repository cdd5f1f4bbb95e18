package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/messaging/auth"
)

// securePlane starts edge-controlplane with authentication on (the
// default; plaintext, TLS is not what this test is about) and returns its
// URL and the admin and readonly creds files it wrote.
func securePlane(t *testing.T, dataDir string) (url, admin, readonly string) {
	t.Helper()
	p := startProc(t, "edge-controlplane", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--tls=false")
	eventually(t, 20*time.Second, func() error {
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "edge-controlplane ready") {
				continue
			}
			for _, f := range strings.Fields(line) {
				f = strings.TrimRight(f, ",")
				switch {
				case strings.HasPrefix(f, "nats://"):
					url = f
				case strings.HasSuffix(f, "admin.creds"):
					admin = f
				case strings.HasSuffix(f, "readonly.creds"):
					readonly = f
				}
			}
			return nil
		}
		select {
		case <-p.done:
			t.Fatalf("control plane exited:\n%s", p.out.String())
		default:
		}
		return fmt.Errorf("not ready yet")
	})
	if url == "" || admin == "" || readonly == "" {
		t.Fatalf("ready line names no URL or creds files:\n%s", p.out.String())
	}
	return url, admin, readonly
}

const secretPod = `apiVersion: v1
kind: Secret
metadata: {name: s1}
stringData: {greeting: "from a secret"}
---
apiVersion: v1
kind: Pod
metadata: {name: %[1]s}
spec:
  runtimeClassName: wasm
  nodeSelector: {site: %[2]s}
  containers:
  - name: hello
    image: hello@sha256:%[3]s
    env:
    - name: GREETING
      valueFrom: {secretKeyRef: {name: s1, key: greeting}}
    resources:
      limits: {memory: 16Mi}
`

func TestAuth(t *testing.T) {
	tmp := t.TempDir()
	url, admin, readonly := securePlane(t, tmp+"/cp")
	for _, f := range []string{admin, readonly} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("creds file %s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	as := func(creds string, args ...string) []string { return append([]string{"--creds", creds}, args...) }

	// Unauthenticated: refused.
	r := ctl(t, url, nil, "get", "nodes")
	if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "authorization violation") {
		t.Fatalf("edgectl without creds: %s", r)
	}
	// Readonly: reads, cannot apply nor create tokens.
	mustCtl(t, url, as(readonly, "get", "namespaces")...)
	if out := mustCtl(t, url, as(readonly, "version")...); !strings.Contains(out, "Server Version: edge-api") {
		t.Fatalf("readonly version: %q", out)
	}
	r = ctl(t, url, strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ro}\ndata: {a: b}\n"),
		as(readonly, "apply", "-f", "-")...)
	if r.code == 0 || !strings.Contains(r.stderr, "Forbidden") {
		t.Fatalf("readonly apply: %s", r)
	}
	if r := ctl(t, url, nil, as(admin, "get", "configmap", "ro")...); r.code == 0 {
		t.Fatalf("readonly apply stored the configmap: %s", r)
	}
	if r := ctl(t, url, nil, as(readonly, "token", "create")...); r.code == 0 {
		t.Fatalf("readonly token create: %s", r)
	}

	// Two devices join with a token each.
	token := func(args ...string) string {
		out := strings.TrimSpace(mustCtl(t, url, as(admin, append([]string{"token", "create"}, args...)...)...))
		if !strings.HasPrefix(out, "edgejoin1.") {
			t.Fatalf("token create printed %q", out)
		}
		return out
	}
	joinAgent := func(node, dir, tok string) *proc {
		return startProc(t, "edge-agent", "--server", url, "--node-name", node, "--data-dir", dir,
			"--labels", "site="+node, "--heartbeat-interval", "1s", "--log-level", "debug", "--join-token", tok)
	}
	tokA := token("--ttl", "10m")
	agentA := joinAgent("a", tmp+"/a", tokA)
	agentB := joinAgent("b", tmp+"/b", token())
	for _, n := range []string{"a", "b"} {
		mustCtl(t, url, as(admin, "wait", "--for=condition=Ready", "node/"+n, "--timeout=60s")...)
	}
	fi, err := os.Stat(filepath.Join(tmp, "a", "node.creds"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.creds: %v %v, want mode 0600", fi, err)
	}

	// A pod using a secret runs on each node: the node reads the secret
	// its pod uses, its assignments, the module, and reports status.
	out := mustCtl(t, url, as(admin, "push", module(t, "hello"), "--name", "hello:v1")...)
	digest := regexp.MustCompile(`sha256:([0-9a-f]{64})`).FindStringSubmatch(out)
	if digest == nil {
		t.Fatalf("push printed no digest: %q", out)
	}
	for _, n := range []string{"a", "b"} {
		r := ctl(t, url, strings.NewReader(fmt.Sprintf(secretPod, "hello-"+n, n, digest[1])), as(admin, "apply", "-f", "-")...)
		if r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		mustCtl(t, url, as(admin, "wait", "--for=condition=Ready", "pod/hello-"+n, "--timeout=60s")...)
	}
	eventually(t, 30*time.Second, func() error {
		r := ctl(t, url, nil, as(readonly, "logs", "hello-a")...)
		if !strings.Contains(r.stdout, "from a secret") {
			return fmt.Errorf("readonly logs of hello-a: %s", r)
		}
		return nil
	})

	// A used token and an expired token are refused with a clear error.
	used := startProc(t, "edge-agent", "--server", url, "--node-name", "c", "--data-dir", tmp+"/c", "--join-token", tokA)
	waitExit(t, used, "already used")
	short := token("--ttl", "1s")
	jt, err := auth.ParseJoinToken(short)
	if err != nil {
		t.Fatal(err)
	}
	jc, err := jt.Creds()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if time.Now().Before(jc.Expires().Add(time.Second)) {
			return fmt.Errorf("token not expired yet")
		}
		return nil
	})
	expired := startProc(t, "edge-agent", "--server", url, "--node-name", "d", "--data-dir", tmp+"/d", "--join-token", short)
	waitExit(t, expired, "expired")

	// Revoking a: its connection is closed, it cannot connect again; b
	// keeps working.
	out = mustCtl(t, url, as(admin, "node", "revoke", "a")...)
	if !strings.Contains(out, "node/a revoked") {
		t.Fatalf("node revoke: %q", out)
	}
	eventually(t, 20*time.Second, func() error {
		if s := agentA.out.String(); !strings.Contains(s, "connection to the control plane closed") {
			return fmt.Errorf("agent a still connected")
		}
		return nil
	})
	agentA.stop(t)
	again := startProc(t, "edge-agent", "--server", url, "--node-name", "a", "--data-dir", tmp+"/a", "--heartbeat-interval", "1s")
	eventually(t, 30*time.Second, func() error {
		if s := again.out.String(); !strings.Contains(s, "connection to the control plane closed") {
			return fmt.Errorf("restarted agent a not refused yet")
		}
		return nil
	})
	mustCtl(t, url, as(admin, "delete", "pod", "hello-b")...)
	r = ctl(t, url, strings.NewReader(fmt.Sprintf(secretPod, "hello-b2", "b", digest[1])), as(admin, "apply", "-f", "-")...)
	if r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	mustCtl(t, url, as(admin, "wait", "--for=condition=Ready", "pod/hello-b2", "--timeout=60s")...)
	// Nothing the agent does needs more than its node's permissions.
	if s := agentB.out.String(); strings.Contains(strings.ToLower(s), "permissions violation") || strings.Contains(s, "Forbidden") {
		t.Fatalf("agent b was refused something:\n%s", s)
	}
	if os.Getenv("E2E_AUTH_DUMP") != "" {
		t.Logf("agent b:\n%s", agentB.out.String())
	}
}

// waitExit waits for p to exit with an error whose output names want.
func waitExit(t *testing.T, p *proc, want string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s still running:\n%s", p.name, p.out.String())
	}
	if p.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(p.out.String(), want) {
		t.Fatalf("%s exit %d, output does not say %q:\n%s", p.name, p.cmd.ProcessState.ExitCode(), want, p.out.String())
	}
}
