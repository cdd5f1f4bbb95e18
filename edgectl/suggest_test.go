package edgectl

import (
	"strings"
	"testing"
)

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"pods", "pods", 0}, {"", "abc", 3}, {"abc", "", 3},
		{"deploy2", "deploy", 1}, {"pdos", "pods", 1}, {"kitten", "sitting", 3},
		{"secrest", "secrets", 1}, {"nodes", "ndoe", 2},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestSuggestKind(t *testing.T) {
	for typed, want := range map[string]string{
		"deploy2":     "deployments",
		"deploymnets": "deployments",
		"pdos":        "pods",
		"Pdo":         "pods",
		"configmap2":  "configmaps",
		"secert":      "secrets",
		"rollotus":    "rollouts",
		"svcs":        "services",
		"gadgets":     "",
		"xyzzy":       "",
		"q":           "",
	} {
		if got := suggestKind(typed); got != want {
			t.Errorf("suggestKind(%q) = %q, want %q", typed, got, want)
		}
	}
}

func TestSuggestionMessages(t *testing.T) {
	url := closedURL(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "deploy2"}, "error: the server doesn't have a resource type \"deploy2\"; did you mean \"deployments\"?\nSee 'edgectl get --help' for usage.\n"},
		{[]string{"describe", "pdos", "x"}, `the server doesn't have a resource type "pdos"; did you mean "pods"?`},
		{[]string{"delete", "secert/x"}, `did you mean "secrets"?`},
		{[]string{"label", "confgmap", "x", "a=b"}, `did you mean "configmaps"?`},
		{[]string{"gett", "pods"}, "error: unknown command \"gett\" for \"edgectl\"\n\nDid you mean this?\n\tget\n"},
		{[]string{"aply", "-f", "x"}, "Did you mean this?\n\tapply\n"},
		{[]string{"get", "pods", "-o", "xml"}, "allowed formats are: custom-columns=HEADER:.json.path,...,custom-columns-file=FILE,json,jsonpath={...},name,wide,yaml"},
	} {
		r := runCtl(t, "", append([]string{"--server", url}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("edgectl %s: exit %d stderr %q, want %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	// No suggestion when nothing is close.
	r := runCtl(t, "", "--server", url, "get", "gadgets")
	if strings.Contains(r.stderr, "did you mean") {
		t.Errorf("gadgets: unexpected suggestion: %q", r.stderr)
	}
}

func TestNotFoundNamespaceHint(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	mustOK(t, ctl("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n", "apply", "-f", "-"), "apply namespace")
	mustOK(t, ctl(cmManifest("stray", "1"), "-n", "other", "apply", "-f", "-"), "apply cm")

	r := ctl("", "get", "configmap", "stray")
	want := "Error from server (NotFound): configmaps \"stray\" not found in namespace \"default\"; it exists in namespace \"other\": use -n other (or list every namespace with -A)\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("get in the wrong namespace: exit %d stderr %q, want %q", r.code, r.stderr, want)
	}
	r = ctl("", "get", "configmap", "nowhere")
	want = "Error from server (NotFound): configmaps \"nowhere\" not found in namespace \"default\"\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("get of a missing object: exit %d stderr %q, want %q", r.code, r.stderr, want)
	}
	// Cluster-scoped kinds have no namespace to mention.
	r = ctl("", "get", "node", "nowhere")
	if r.code != 1 || strings.Contains(r.stderr, "namespace") {
		t.Errorf("get node: exit %d stderr %q", r.code, r.stderr)
	}
}
