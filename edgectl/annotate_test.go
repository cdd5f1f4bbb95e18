package edgectl

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
)

// edgectl annotate against a real control plane: add, overwrite refused
// then accepted, remove, dry runs that store nothing, and --selector.
func TestAnnotateIntegration(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	cl := client.New(connect(t, url))
	annotations := func(name string) map[string]string {
		t.Helper()
		obj, err := cl.Get(context.Background(), "configmaps", "default", name)
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		return obj.GetObjectMeta().Annotations
	}
	want := func(name string, w map[string]string) {
		t.Helper()
		if got := annotations(name); !reflect.DeepEqual(got, w) {
			t.Fatalf("%s annotations = %v, want %v", name, got, w)
		}
	}
	mustOK(t, ctl(cmManifest("one", "a")+"---\n"+cmManifest("two", "b"), "apply", "-f", "-"), "apply")

	if out := mustOK(t, ctl("", "annotate", "configmap", "one", "owner=ops", "note=first version"), "annotate"); out != "configmap/one annotated\n" {
		t.Fatalf("annotate output %q", out)
	}
	want("one", map[string]string{"owner": "ops", "note": "first version"})

	r := ctl("", "annotate", "cm/one", "owner=dev")
	if r.code == 0 || !strings.Contains(r.stderr, "'owner' already has a value (ops), and --overwrite is false") {
		t.Fatalf("overwrite without --overwrite: exit %d stderr %q", r.code, r.stderr)
	}
	want("one", map[string]string{"owner": "ops", "note": "first version"})
	mustOK(t, ctl("", "annotate", "cm/one", "owner=dev", "--overwrite"), "annotate --overwrite")
	want("one", map[string]string{"owner": "dev", "note": "first version"})
	// The same value again is no change and needs no --overwrite.
	if out := mustOK(t, ctl("", "annotate", "cm/one", "owner=dev"), "same value"); out != "configmap/one not annotated\n" {
		t.Fatalf("same value output %q", out)
	}

	for _, mode := range []string{"client", "server"} {
		out := mustOK(t, ctl("", "annotate", "cm/one", "owner-", "extra=1", "--dry-run="+mode), "dry run "+mode)
		if !strings.Contains(out, "configmap/one annotated") || !strings.Contains(out, "dry run") {
			t.Fatalf("dry run %s output %q", mode, out)
		}
		want("one", map[string]string{"owner": "dev", "note": "first version"})
	}
	// A dry run still refuses what the real command would refuse.
	if r := ctl("", "annotate", "cm/one", "owner=x", "--dry-run=client"); r.code == 0 {
		t.Fatalf("dry run of a refused overwrite succeeded: %q", r.stdout)
	}

	mustOK(t, ctl("", "annotate", "cm/one", "owner-", "note-"), "remove")
	want("one", nil)

	// --selector annotates every match; no match is an error.
	out := mustOK(t, ctl("", "annotate", "configmaps", "-l", "app=demo", "team=edge"), "annotate -l")
	if !strings.Contains(out, "configmap/one annotated") || !strings.Contains(out, "configmap/two annotated") {
		t.Fatalf("annotate -l output %q", out)
	}
	want("one", map[string]string{"team": "edge"})
	want("two", map[string]string{"team": "edge"})
	if r := ctl("", "annotate", "configmaps", "-l", "app=nothing", "team=x"); r.code == 0 || !strings.Contains(r.stderr, `no configmaps match the selector "app=nothing"`) {
		t.Fatalf("no match: exit %d stderr %q", r.code, r.stderr)
	}
	if r := ctl("", "annotate", "cm/one", "-l", "app=demo", "team=x"); r.code == 0 || !strings.Contains(r.stderr, "not both") {
		t.Fatalf("name and selector: exit %d stderr %q", r.code, r.stderr)
	}
	if r := ctl("", "annotate", "cm/one", "bad key=1"); r.code == 0 || !strings.Contains(r.stderr, `invalid annotation key "bad key"`) {
		t.Fatalf("bad key: exit %d stderr %q", r.code, r.stderr)
	}
	// label shares the code: the labels change, the annotations stay.
	mustOK(t, ctl("", "label", "configmaps", "-l", "app=demo", "tier=x"), "label -l")
	obj, err := cl.Get(context.Background(), "configmaps", "default", "two")
	if err != nil {
		t.Fatal(err)
	}
	if m := obj.GetObjectMeta(); m.Labels["tier"] != "x" || m.Labels["app"] != "demo" || m.Annotations["team"] != "edge" {
		t.Fatalf("after label: labels %v annotations %v", m.Labels, m.Annotations)
	}
}
