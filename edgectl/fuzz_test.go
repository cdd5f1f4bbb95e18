package edgectl

import (
	"encoding/json"
	"testing"
)

// FuzzJSONPath checks that parsing and evaluating any expression never panics.
func FuzzJSONPath(f *testing.F) {
	for _, s := range []string{"{.status.phase}", "{.items[*].metadata.name}", `{.status.conditions[?(@.type=="Ready")].status}`, "{.a[0].b}", "{..}", "{.a[", ".a[?(@.b==1)]"} {
		f.Add(s)
	}
	var doc any
	json.Unmarshal([]byte(`{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]},"items":[{"metadata":{"name":"a"}}],"a":[{"b":1}]}`), &doc)
	f.Fuzz(func(t *testing.T, expr string) {
		p, err := parseJSONPath(expr)
		if err != nil {
			return
		}
		p.format(doc)
	})
}

// FuzzWaitFor checks that --for parsing never panics and accepted
// conditions can be evaluated.
func FuzzWaitFor(f *testing.F) {
	for _, s := range []string{"condition=Ready", "condition=Ready=False", "delete", "jsonpath={.status.phase}=Running", "jsonpath=.a=b", "jsonpath={"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseWaitFor(s)
		if err != nil {
			return
		}
		if _, err := c.met(samplePod()); err != nil {
			t.Fatalf("--for=%q: %v", s, err)
		}
	})
}

// FuzzResourceArgs checks that argument parsing never panics and that every
// accepted target has a kind.
func FuzzResourceArgs(f *testing.F) {
	f.Add("pods", "hello")
	f.Add("pod/a", "cm/b")
	f.Add("pods,cm", "")
	f.Add("/", "x/")
	f.Fuzz(func(t *testing.T, a, b string) {
		args := []string{a}
		if b != "" {
			args = append(args, b)
		}
		targets, _, err := parseResourceArgs(args)
		if err != nil {
			return
		}
		for _, tg := range targets {
			if tg.Kind.Resource == "" {
				t.Fatalf("%q: target without a kind: %+v", args, targets)
			}
		}
	})
}
