package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

// securePlane starts edge-controlplane with authentication on (the
// default; plaintext, TLS is not what this test is about) and returns its
// URL and the admin and readonly creds files it wrote.
func securePlane(t *testing.T, dataDir string) (url, admin, readonly string) {
	t.Helper()
	p := startSecurePlane(t, dataDir, "--tls=false")
	if !strings.HasPrefix(p.url, "nats://") || p.ca != "" {
		t.Fatalf("--tls=false: ready line names %s, CA %q", p.url, p.ca)
	}
	return p.url, p.admin, p.readonly
}

// plane is a control plane started by startSecurePlane, as its ready line
// describes it.
type plane struct {
	proc            *proc
	url             string // nats:// or tls://
	ca              string // the generated CA ("" without TLS)
	admin, readonly string // creds files
}

// startSecurePlane starts edge-controlplane with authentication on and
// the extra flags, and reads its URL, CA and creds files from its ready
// line ("edge-controlplane ready, NATS at tls://… with CA …/ca.pem, admin
// creds …, readonly creds …").
func startSecurePlane(t *testing.T, dataDir string, args ...string) plane {
	t.Helper()
	p := plane{proc: startProc(t, "edge-controlplane", append([]string{"--data-dir", dataDir, "--listen", "127.0.0.1:0"}, args...)...)}
	eventually(t, 20*time.Second, func() error {
		sc := bufio.NewScanner(strings.NewReader(p.proc.out.String()))
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "edge-controlplane ready") {
				continue
			}
			for _, f := range strings.Fields(line) {
				f = strings.TrimRight(f, ",")
				switch {
				case strings.HasPrefix(f, "nats://"), strings.HasPrefix(f, "tls://"):
					p.url = f
				case strings.HasSuffix(f, "/ca.pem"):
					p.ca = f
				case strings.HasSuffix(f, "admin.creds"):
					p.admin = f
				case strings.HasSuffix(f, "readonly.creds"):
					p.readonly = f
				}
			}
			return nil
		}
		select {
		case <-p.proc.done:
			t.Fatalf("control plane exited:\n%s", p.proc.out.String())
		default:
		}
		return fmt.Errorf("not ready yet")
	})
	if p.url == "" || p.admin == "" || p.readonly == "" {
		t.Fatalf("ready line names no URL or creds files:\n%s", p.proc.out.String())
	}
	return p
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
			"--labels", "site="+node, "--heartbeat-interval", "1s", "--log-level", "debug", "--join-token", tok,
			"--ingress-http-port", "0", "--ingress-https-port", "0")
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

// TestAuthTLS runs the default setup, TLS with the generated CA and
// authentication on: an agent given the CA joins with a token, registers
// and runs a pod that uses a Secret; agents without the CA, or with another
// CA, are refused by the TLS handshake and say why, and the refusal leaves
// the token unused.
func TestAuthTLS(t *testing.T) {
	tmp := t.TempDir()
	cp := startSecurePlane(t, tmp+"/cp")
	if !strings.HasPrefix(cp.url, "tls://") || cp.ca == "" {
		t.Fatalf("default control plane: URL %s, CA %q; want tls:// and the generated CA", cp.url, cp.ca)
	}
	if cp.ca != filepath.Join(tmp, "cp", "tls", "ca.pem") {
		t.Fatalf("ready line names CA %s, want <data-dir>/tls/ca.pem", cp.ca)
	}
	for _, f := range []string{"ca-key.pem", "server-key.pem"} {
		fi, err := os.Stat(filepath.Join(tmp, "cp", "tls", f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	url := cp.url
	admin := func(args ...string) []string {
		return append([]string{"--tls-ca", cp.ca, "--creds", cp.admin}, args...)
	}

	// edgectl: without the CA the handshake fails and it says which flag
	// fixes it; with it, the admin creds work.
	r := ctl(t, url, nil, "--creds", cp.admin, "get", "nodes")
	r0 := r
	if r.code == 0 || !strings.Contains(r.stderr, "certificate signed by unknown authority") || !strings.Contains(r.stderr, "--tls-ca") {
		t.Fatalf("edgectl without the CA: %s", r)
	}
	mustCtl(t, url, admin("get", "namespaces")...)
	token := strings.TrimSpace(mustCtl(t, url, admin("token", "create", "--ttl", "10m", "--node", "gate-1")...))
	if !strings.HasPrefix(token, "edgejoin1.") {
		t.Fatalf("token create printed %q", token)
	}

	// Agents that do not trust the control plane's certificate: none
	// given (the system roots), or another CA's. The handshake fails
	// before the token is sent; the agent keeps retrying and logs why.
	wrong, err := messaging.EnsureCerts(messaging.CertOptions{Dir: filepath.Join(tmp, "other-ca")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no CA", nil},
		{"another CA", []string{"--tls-ca", wrong.CAFile}},
	} {
		dir := filepath.Join(tmp, "refused-"+strings.ReplaceAll(tc.name, " ", "-"))
		a := startProc(t, "edge-agent", append([]string{"--server", url, "--node-name", "gate-1", "--data-dir", dir,
			"--heartbeat-interval", "1s", "--ingress-http-port", "0", "--ingress-https-port", "0", "--join-token", token}, tc.args...)...)
		eventually(t, 30*time.Second, func() error {
			out := a.out.String()
			if !strings.Contains(out, "x509: certificate signed by unknown authority") {
				return fmt.Errorf("agent with %s: no TLS refusal logged yet", tc.name)
			}
			return nil
		})
		a.stop(t)
		if os.Getenv("E2E_AUTH_DUMP") != "" {
			t.Logf("agent with %s:\n%s", tc.name, a.out.String())
		}
		if _, err := os.Stat(filepath.Join(dir, "node.creds")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("agent with %s: node.creds %v, want none", tc.name, err)
		}
		if strings.Contains(a.out.String(), "joined") {
			t.Fatalf("agent with %s joined:\n%s", tc.name, a.out.String())
		}
	}
	if r := ctl(t, url, nil, admin("get", "node", "gate-1")...); r.code == 0 {
		t.Fatalf("a refused agent registered its node: %s", r)
	}

	// With the CA the same token (unused so far) joins.
	agentDir := filepath.Join(tmp, "gate-1")
	agentArgs := []string{"--server", url, "--node-name", "gate-1", "--data-dir", agentDir,
		"--labels", "site=gate-1", "--heartbeat-interval", "1s", "--ingress-http-port", "0", "--ingress-https-port", "0"}
	a := startProc(t, "edge-agent", append(agentArgs, "--tls-ca", cp.ca, "--join-token", token)...)
	mustCtl(t, url, admin("wait", "--for=condition=Ready", "node/gate-1", "--timeout=60s")...)
	fi, err := os.Stat(filepath.Join(agentDir, "node.creds"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.creds: %v %v, want mode 0600", fi, err)
	}
	if !strings.Contains(a.out.String(), "joined: node credentials written") {
		t.Fatalf("agent did not log its join:\n%s", a.out.String())
	}

	// It runs a pod that uses a Secret: assignments, the Secret and the
	// module all reach it over TLS, and its status comes back.
	out := mustCtl(t, url, admin("push", module(t, "hello"), "--name", "hello:v1")...)
	digest := regexp.MustCompile(`sha256:([0-9a-f]{64})`).FindStringSubmatch(out)
	if digest == nil {
		t.Fatalf("push printed no digest: %q", out)
	}
	r = ctl(t, url, strings.NewReader(fmt.Sprintf(secretPod, "hello-tls", "gate-1", digest[1])), admin("apply", "-f", "-")...)
	if r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	mustCtl(t, url, admin("wait", "--for=condition=Ready", "pod/hello-tls", "--timeout=60s")...)
	eventually(t, 30*time.Second, func() error {
		r := ctl(t, url, nil, "--tls-ca", cp.ca, "--creds", cp.readonly, "logs", "hello-tls")
		if !strings.Contains(r.stdout, "from a secret") {
			return fmt.Errorf("logs of hello-tls: %s", r)
		}
		return nil
	})
	if s := a.out.String(); strings.Contains(strings.ToLower(s), "permissions violation") || strings.Contains(s, "Forbidden") {
		t.Fatalf("the agent was refused something:\n%s", s)
	}

	// The joined agent restarted without the CA: its creds are fine but
	// the handshake is not; it logs the fix and keeps retrying.
	a.stop(t)
	b := startProc(t, "edge-agent", agentArgs...)
	eventually(t, 30*time.Second, func() error {
		out := b.out.String()
		if !strings.Contains(out, "cannot connect to the control plane over TLS") ||
			!strings.Contains(out, "certificate signed by unknown authority") ||
			!strings.Contains(out, "pass the control plane's CA with --tls-ca FILE") {
			return fmt.Errorf("restarted agent without the CA: no TLS hint logged yet")
		}
		return nil
	})
	if os.Getenv("E2E_AUTH_DUMP") != "" {
		t.Logf("edgectl without the CA:\n%s\nrestarted agent without the CA:\n%s", r0, b.out.String())
	}
	select {
	case <-b.done:
		t.Fatalf("agent without the CA exited instead of retrying:\n%s", b.out.String())
	default:
	}
}
