package edgectl

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{
		"bash":       "# bash completion V2 for edgectl",
		"zsh":        "#compdef edgectl",
		"fish":       "# fish completion for edgectl",
		"powershell": "# powershell completion for edgectl",
	} {
		r := runCtl(t, "", "completion", shell)
		if r.code != 0 || !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "__complete") {
			t.Errorf("completion %s: exit %d, starts %.60q, stderr %q", shell, r.code, r.stdout, r.stderr)
		}
	}
	if r := runCtl(t, "", "completion", "tcsh"); r.code != 1 || !strings.Contains(r.stderr, `unsupported shell "tcsh"`) {
		t.Errorf("completion tcsh: %+v", r)
	}
}

// completions runs `edgectl __complete args...` and returns the candidates
// and the directive line.
func completions(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	r := runCtl(t, "", append([]string{"__complete"}, args...)...)
	if r.code != 0 {
		t.Fatalf("__complete %q: %+v", args, r)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	return lines[:len(lines)-1], lines[len(lines)-1]
}

func TestCompletionKindsOffline(t *testing.T) {
	down := closedURL(t)
	got, dir := completions(t, "--server", down, "get", "")
	var resources []string // every kind's resource name, sorted
	for _, k := range manifests.Kinds() {
		resources = append(resources, k.Resource)
	}
	sort.Strings(resources)
	want := strings.Join(resources, " ")
	if len(resources) < 20 || !strings.Contains(want, "deployments") {
		t.Fatalf("kinds: %s", want)
	}
	if strings.Join(got, " ") != want || dir != ":4" {
		t.Errorf("get kinds: %q %s, want %q :4 (no file completion)", got, dir, want)
	}
	if got, _ := completions(t, "--server", down, "describe", "d"); strings.Join(got, " ") != "daemonsets deployments" {
		t.Errorf("describe d: %q", got)
	}
	if got, _ := completions(t, "--server", down, "delete", "po"); strings.Join(got, " ") != "pods" {
		t.Errorf("delete po (short name): %q", got)
	}
	// Names: an unreachable server completes nothing, quickly and quietly.
	start := time.Now()
	if got, dir := completions(t, "--server", down, "get", "pods", ""); len(got) != 0 || dir != ":4" {
		t.Errorf("names from a closed port: %q %s", got, dir)
	}
	if d := time.Since(start); d > completionTimeout+time.Second {
		t.Errorf("completion took %v", d)
	}
	if got, _ := completions(t, "--server", down, "get", "pods", "-o", ""); !strings.Contains(strings.Join(got, " "), "custom-columns=") {
		t.Errorf("-o formats: %q", got)
	}
}

func TestCompletionNames(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	mustOK(t, ctl("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n", "apply", "-f", "-"), "apply namespace")
	for _, p := range []string{"web-1", "web-2", "api"} {
		mustOK(t, ctl(fmt.Sprintf(podManifest, p, "n1"), "apply", "-f", "-"), "apply pod")
	}
	mustOK(t, ctl(fmt.Sprintf(podManifest, "elsewhere", "n1"), "-n", "other", "apply", "-f", "-"), "apply pod other")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "pods", ""}, "api web-1 web-2"},
		{[]string{"get", "pods", "web"}, "web-1 web-2"},
		{[]string{"get", "pods", "web-1", ""}, "api web-2"},
		{[]string{"describe", "po", "a"}, "api"},
		{[]string{"get", "pods", "-n", "other", ""}, "elsewhere"},
		{[]string{"delete", "pod/w"}, "pod/web-1 pod/web-2"},
		{[]string{"logs", ""}, "api web-1 web-2"},
		{[]string{"get", "pods", "-n", ""}, "default edge-system other"},
		{[]string{"get", "pods", "-n", "o"}, "other"},
	} {
		got, _ := completions(t, append([]string{"--server", url}, tc.args...)...)
		if strings.Join(got, " ") != tc.want {
			t.Errorf("__complete %q: %q, want %q", tc.args, got, tc.want)
		}
	}
}
