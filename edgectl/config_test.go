package edgectl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFileIn writes content to dir/name and returns the path.
func writeFileIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, content)
	return p
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"syntax", "contexts:\n- name: a\n  context: {server: x\n", "config file F: yaml: line 2: did not find expected ',' or '}'"},
		{"unknown field", "contexts:\n- name: a\n  context:\n    sever: nats://x:1\n", "config file F: yaml: unmarshal errors:\n  line 4: field sever not found"},
		{"wrong type", "contexts: 7\n", "config file F: yaml: unmarshal errors:\n  line 1:"},
		{"no name", "contexts:\n- context: {server: nats://x:1}\n", "config file F: contexts[0].name: required"},
		{"twice", "contexts:\n- name: a\n- name: a\n", `config file F: contexts[1].name: context "a" is defined twice`},
	} {
		_, err := parseConfig("F", []byte(tc.content))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want prefix %q", tc.name, err, tc.want)
		}
	}
	cfg, err := parseConfig("F", nil)
	if err != nil || len(cfg.Contexts) != 0 {
		t.Errorf("empty file: %+v %v", cfg, err)
	}
}

func TestConfigCommands(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config")
	t.Setenv(envConfig, path)
	ctl := func(args ...string) ctlResult { return runCtl(t, "", args...) }

	if r := ctl("config", "current-context"); r.code != 1 || r.stderr != "error: current-context is not set\n" {
		t.Errorf("current-context without a file: %+v", r)
	}
	if r := ctl("config", "use-context", "lab"); r.code != 1 || !strings.Contains(r.stderr, `context "lab" not found: `+path+" defines no contexts") {
		t.Errorf("use-context without contexts: %+v", r)
	}
	cwd, _ := os.Getwd()
	if out := mustOK(t, ctl("config", "set-context", "lab", "--server", "nats://127.0.0.1:4300", "--creds", "lab.creds", "-n", "sensors"), "set-context"); out != "Context \"lab\" created.\n" {
		t.Errorf("set-context: %q", out)
	}
	mustOK(t, ctl("config", "set-context", "prod", "--server", "tls://10.0.0.1:4222", "--tls-ca", "/etc/edge/ca.pem"), "set-context prod")
	if r := ctl("config", "set-context", "bad", "--server", "localhost"); r.code != 1 || !strings.Contains(r.stderr, `--server: "localhost" is not a URL of the form nats://HOST:PORT`) {
		t.Errorf("bad server: %+v", r)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", st.Mode().Perm())
	}
	if r := ctl("config", "use-context", "lba"); r.code != 1 || !strings.Contains(r.stderr, `context "lba" not found in `+path+`; known contexts: lab, prod; did you mean "lab"?`) {
		t.Errorf("use-context typo: %+v", r)
	}
	if out := mustOK(t, ctl("config", "use-context", "lab"), "use-context"); out != "Switched to context \"lab\".\n" {
		t.Errorf("use-context: %q", out)
	}
	if out := mustOK(t, ctl("config", "current-context"), "current-context"); out != "lab\n" {
		t.Errorf("current-context: %q", out)
	}
	creds := filepath.Join(cwd, "lab.creds")
	wantRows := [][]string{
		{"CURRENT", "NAME", "SERVER", "CREDS", "NAMESPACE"},
		{"*", "lab", "nats://127.0.0.1:4300", creds, "sensors"},
		{"prod", "tls://10.0.0.1:4222"},
	}
	out := mustOK(t, ctl("config", "get-contexts"), "get-contexts")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(wantRows) {
		t.Fatalf("get-contexts:\n%s", out)
	}
	for i, l := range lines {
		if got := strings.Fields(l); strings.Join(got, " ") != strings.Join(wantRows[i], " ") {
			t.Errorf("get-contexts line %d: %q, want %q", i, got, wantRows[i])
		}
	}
	if !strings.HasPrefix(lines[2], "          prod ") {
		t.Errorf("get-contexts: the CURRENT column of prod is not empty: %q", lines[2])
	}
	if out := mustOK(t, ctl("config", "get-contexts", "-o", "name"), "get-contexts -o name"); out != "lab\nprod\n" {
		t.Errorf("get-contexts -o name: %q", out)
	}
	mustOK(t, ctl("config", "set-context", "--current", "--namespace", "team"), "set-context --current")
	view := mustOK(t, ctl("config", "view", "--minify"), "view --minify")
	if !strings.Contains(view, "current-context: lab\n") || !strings.Contains(view, "namespace: team\n") || strings.Contains(view, "prod") {
		t.Errorf("view --minify:\n%s", view)
	}
	r := ctl("config", "delete-context", "lab")
	if r.code != 0 || r.stdout != "deleted context lab from "+path+"\n" || !strings.Contains(r.stderr, "removed your current context") {
		t.Errorf("delete-context: %+v", r)
	}
	view = mustOK(t, ctl("config", "view"), "view")
	if strings.Contains(view, "lab") || strings.Contains(view, "current-context") || !strings.Contains(view, "name: prod") {
		t.Errorf("view after delete:\n%s", view)
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("config directory holds %d entries, want only the config", len(entries))
	}
}

func TestConfigFileErrorsStopCommands(t *testing.T) {
	path := writeFileIn(t, t.TempDir(), "config", "current-context: a\ncontexts:\n- name: a\n  context:\n    server nats://x\n")
	t.Setenv(envConfig, path)
	r := runCtl(t, "", "get", "pods")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "error: config file "+path+": yaml: unmarshal errors:\n  line 5: cannot unmarshal") {
		t.Errorf("bad yaml: %+v", r)
	}
	path = writeFileIn(t, t.TempDir(), "config", "current-context: gone\ncontexts:\n- name: a\n  context: {server: 'nats://127.0.0.1:1'}\n")
	t.Setenv(envConfig, path)
	r = runCtl(t, "", "get", "pods")
	if r.code != 1 || r.stderr != "error: current-context: context \"gone\" not found in "+path+"; known contexts: a\n" {
		t.Errorf("missing current context: %+v", r)
	}
	// The config commands still work, to repair it.
	mustOK(t, runCtl(t, "", "config", "use-context", "a"), "use-context a")
}

func TestContexts(t *testing.T) {
	url := startControlPlane(t)
	down := closedURL(t)
	dir := t.TempDir()
	path := writeFileIn(t, dir, "config", `apiVersion: v1
kind: Config
current-context: good
contexts:
- name: good
  context:
    server: `+url+`
    namespace: team
- name: broken
  context:
    server: `+down+`
- name: relative
  context:
    server: `+url+`
    creds: keys/admin.creds
`)
	t.Setenv(envConfig, path)
	t.Setenv("EDGE_SERVER", "")
	t.Setenv("EDGE_CREDS", "")
	t.Setenv("EDGE_TLS_CA", "")
	ctl := func(stdin string, args ...string) ctlResult { return runCtl(t, stdin, args...) }

	// The current context gives the server and the namespace.
	mustOK(t, ctl("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n", "apply", "-f", "-"), "apply namespace")
	if out := mustOK(t, ctl(cmManifest("in-team", "1"), "apply", "-f", "-"), "apply"); out != "configmap/in-team created\n" {
		t.Errorf("apply: %q", out)
	}
	if out := mustOK(t, ctl("", "get", "cm", "-o", "name"), "get"); out != "configmap/in-team\n" {
		t.Errorf("get in the context's namespace: %q", out)
	}
	// -n overrides the context's namespace.
	if r := ctl("", "get", "cm", "in-team", "-n", "default"); r.code != 1 || !strings.Contains(r.stderr, `not found in namespace "default"`) {
		t.Errorf("-n default: %+v", r)
	}
	// --context picks another; a connection error names it.
	r := ctl("", "--context", "broken", "get", "pods")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Unable to connect to the server at "+down) ||
		!strings.Contains(r.stderr, `The server comes from context "broken" in `+path) {
		t.Errorf("--context broken: %+v", r)
	}
	// --server beats the context.
	if out := mustOK(t, ctl("", "--context", "broken", "--server", url, "-n", "team", "get", "cm", "-o", "name"), "--server over --context"); out != "configmap/in-team\n" {
		t.Errorf("--server over --context: %q", out)
	}
	// EDGE_SERVER beats the context too.
	t.Setenv("EDGE_SERVER", url)
	if out := mustOK(t, ctl("", "--context", "broken", "-n", "team", "get", "cm", "-o", "name"), "EDGE_SERVER over --context"); out != "configmap/in-team\n" {
		t.Errorf("EDGE_SERVER over --context: %q", out)
	}
	t.Setenv("EDGE_SERVER", "")
	// use-context switches every later command.
	mustOK(t, ctl("", "config", "use-context", "broken"), "use-context broken")
	if r := ctl("", "get", "pods"); r.code != 1 || !strings.Contains(r.stderr, `context "broken"`) {
		t.Errorf("after use-context broken: %+v", r)
	}
	mustOK(t, ctl("", "config", "use-context", "good"), "use-context good")
	mustOK(t, ctl("", "get", "cm", "in-team"), "after use-context good")
	// Relative paths are relative to the file's directory.
	r = ctl("", "--context", "relative", "get", "pods")
	if r.code != 1 || !strings.Contains(r.stderr, filepath.Join(dir, "keys", "admin.creds")) {
		t.Errorf("relative creds: %+v", r)
	}
	// An unknown context lists the known ones.
	r = ctl("", "--context", "nope", "get", "pods")
	if r.code != 1 || r.stderr != "error: --context: context \"nope\" not found in "+path+"; known contexts: broken, good, relative\n" {
		t.Errorf("unknown context: %+v", r)
	}
}

// FuzzParseConfig checks that any file either parses into contexts with
// unique, non-empty names or is an error naming the file.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "contexts: []\n", "current-context: a\ncontexts:\n- name: a\n  context: {server: 'nats://x:1', namespace: n}\n", "contexts: 7", "{", "- a\n- b\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		cfg, err := parseConfig("F", []byte(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config file F: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, c := range cfg.Contexts {
			if c.Name == "" || seen[c.Name] {
				t.Fatalf("accepted contexts %+v", cfg.Contexts)
			}
			seen[c.Name] = true
		}
	})
}
