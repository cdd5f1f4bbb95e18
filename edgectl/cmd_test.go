package edgectl

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

// ctlResult is the outcome of one in-process edgectl run.
type ctlResult struct {
	code           int
	stdout, stderr string
}

// runCtl runs edgectl in-process with stdin and returns what it printed.
func runCtl(t *testing.T, stdin string, args ...string) ctlResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errb})
	return ctlResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// closedURL is a NATS URL nobody listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "nats://" + addr
}

func TestUsageErrors(t *testing.T) {
	url := closedURL(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, "error: unknown command \"frobnicate\" for \"edgectl\"\nSee 'edgectl --help' for usage."},
		{[]string{"get"}, "error: you must specify the type of resource\nSee 'edgectl get --help' for usage."},
		{[]string{"get", "pods", "-o", "xml"}, `output format "xml"`},
		{[]string{"get", "gadgets"}, `the server doesn't have a resource type "gadgets"`},
		{[]string{"get", "pods", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"get", "pods", "-l", "a in (b"}, "label selector"},
		{[]string{"apply"}, "must specify one of -f"},
		{[]string{"apply", "-f", "x.yaml", "--dry-run=maybe"}, "invalid dry-run value"},
		{[]string{"delete", "pods"}, "no name was specified"},
		{[]string{"wait", "pod/x", "--for=ready"}, "unrecognized condition"},
		{[]string{"wait", "pod/x"}, "--for is required"},
		{[]string{"logs"}, "expected exactly one POD argument"},
		{[]string{"label", "pod", "x", "bad"}, `invalid label spec "bad"`},
		{[]string{"push", "m.wasm"}, "--name NAME[:TAG] is required"},
		{[]string{"push", "m.wasm", "--name", "Bad Name"}, "invalid name"},
	} {
		r := runCtl(t, "", append([]string{"--server", url}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("edgectl %s: exit %d stderr %q, want exit 1 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
		if strings.Contains(r.stderr, "Unable to connect") {
			t.Errorf("edgectl %s: connected before checking its arguments", strings.Join(tc.args, " "))
		}
	}
}

func TestUnreachableServer(t *testing.T) {
	url := closedURL(t)
	r := runCtl(t, "", "--server", url, "get", "pods")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Unable to connect to the server at "+url+": ") {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestApplyDecodeErrorNeedsNoServer(t *testing.T) {
	bad := "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers:\n  - name: c\n    imagee: x\n"
	r := runCtl(t, bad, "--server", closedURL(t), "apply", "-f", "-")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "error: STDIN: ") || !strings.Contains(r.stderr, "spec.containers[0].imagee") {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestVersionClientOnly(t *testing.T) {
	r := runCtl(t, "", "version", "--client")
	if r.code != 0 || r.stdout != "Client Version: "+Version+"\n" {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestServerFromEnvironment(t *testing.T) {
	url := closedURL(t)
	t.Setenv("EDGE_SERVER", url)
	r := runCtl(t, "", "get", "pods")
	if !strings.Contains(r.stderr, url) {
		t.Errorf("EDGE_SERVER not used: %q", r.stderr)
	}
}
