package edgectl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// applyObjs decodes docs as edgectl apply does.
func applyObjs(t *testing.T, docs ...string) []sourceObject {
	t.Helper()
	objs, err := decodeSources([]manifestSource{{Name: "test.yaml", Data: []byte(strings.Join(docs, "---\n"))}})
	if err != nil {
		t.Fatal(err)
	}
	if err := resolveNamespaces(objs, "default", false); err != nil {
		t.Fatal(err)
	}
	namespacesFirst(objs)
	return objs
}

func nsDoc(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", name)
}

func cmDoc(name, ns, v string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {v: %q}\n", name, ns, v)
}

func svcDoc(name, ns string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec:\n  selector: {app: %s}\n  ports: [{port: 80}]\n", name, ns, name)
}

func rolloutDoc(name string) string {
	return fmt.Sprintf(`apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: %s}
spec:
  targetRef: {kind: DaemonSet, name: ds}
  template:
    metadata: {labels: {app: ds}}
    spec: {containers: [{name: c, image: "fake://run"}]}
`, name)
}

// recorder applies objects into memory, recording what was in flight at
// the start of each call, in the order of the calls.
type recorder struct {
	mu       sync.Mutex
	inFlight map[string]bool
	calls    []string            // object names, in the order they were sent
	seen     map[string][]string // name -> what else was in flight when it was sent
	values   map[string]string   // ConfigMap name -> last applied value of "v"
	batches  int
	singles  map[string]bool // objects sent on their own
	fail     map[string]error
}

func newRecorder() *recorder {
	return &recorder{inFlight: map[string]bool{}, seen: map[string][]string{}, values: map[string]string{}, singles: map[string]bool{}, fail: map[string]error{}}
}

func (r *recorder) start(obj manifests.Object) string {
	name := obj.GetObjectMeta().Name
	r.mu.Lock()
	defer r.mu.Unlock()
	var others []string
	for o := range r.inFlight {
		others = append(others, o)
	}
	r.seen[name] = others
	r.inFlight[name] = true
	r.calls = append(r.calls, name)
	return name
}

func (r *recorder) end(obj manifests.Object) (string, error) {
	name := obj.GetObjectMeta().Name
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inFlight, name)
	if err := r.fail[name]; err != nil {
		return "", err
	}
	if cm, ok := obj.(*manifests.ConfigMap); ok {
		r.values[name] = cm.Data["v"]
	}
	return client.ResultCreated, nil
}

func (r *recorder) applier(batches bool) *applier {
	ap := &applier{
		single: func(_ context.Context, so sourceObject) (string, error) {
			r.mu.Lock()
			r.singles[so.Object.GetObjectMeta().Name] = true
			r.mu.Unlock()
			r.start(so.Object)
			return r.end(so.Object)
		},
		batch: func(_ context.Context, raws []json.RawMessage) ([]client.ApplyBatchItem, error) {
			if !batches {
				return nil, fmt.Errorf("%w: test", client.ErrApplyBatchUnsupported)
			}
			r.mu.Lock()
			r.batches++
			r.mu.Unlock()
			objs := make([]manifests.Object, len(raws))
			for i, raw := range raws {
				obj, err := manifests.DecodeJSONStrict(raw)
				if err != nil {
					return nil, err
				}
				objs[i] = obj
				r.start(obj)
			}
			items := make([]client.ApplyBatchItem, len(raws))
			for i, obj := range objs {
				res, err := r.end(obj)
				if err != nil {
					items[i].Error = client.Errorf(client.CodeInvalid, "%v", err)
					continue
				}
				items[i].Result = res
			}
			return items, nil
		},
		inFlight: 8,
	}
	return ap
}

type reported struct {
	name, result string
	err          error
}

func runApplier(ap *applier, objs []sourceObject) []reported {
	var out []reported
	ap.applyAll(context.Background(), objs, func(so sourceObject, result string, err error) {
		out = append(out, reported{so.Object.GetObjectMeta().Name, result, err})
	})
	return out
}

func TestApplyAllOrder(t *testing.T) {
	for _, batches := range []bool{true, false} {
		t.Run(fmt.Sprintf("batches=%v", batches), func(t *testing.T) {
			docs := []string{rolloutDoc("ro-1"), cmDoc("a", "team", "1")}
			for i := range 120 {
				docs = append(docs, cmDoc(fmt.Sprintf("cm-%d", i), "team", "x"))
			}
			docs = append(docs, nsDoc("team"), cmDoc("a", "team", "2"), rolloutDoc("ro-2"), cmDoc("bad", "team", "x"), cmDoc("a", "team", "3"), svcDoc("web", "team"))
			objs := applyObjs(t, docs...)
			r := newRecorder()
			r.fail["bad"] = fmt.Errorf("bad object")
			got := runApplier(r.applier(batches), objs)

			// Reported in input order (Namespaces first), every one once.
			if len(got) != len(objs) {
				t.Fatalf("%d reported, want %d", len(got), len(objs))
			}
			for i, g := range got {
				if want := objs[i].Object.GetObjectMeta().Name; g.name != want {
					t.Fatalf("report %d is %s, want %s", i, g.name, want)
				}
				if (g.err != nil) != (g.name == "bad") {
					t.Errorf("%s: error %v", g.name, g.err)
				}
			}
			// The Namespace went alone, first; the Rollouts last, one at a
			// time, in input order.
			if r.calls[0] != "team" || len(r.seen["team"]) != 0 {
				t.Errorf("namespace sent %v with %v in flight", r.calls[0], r.seen["team"])
			}
			n := len(r.calls)
			if r.calls[n-2] != "ro-1" || r.calls[n-1] != "ro-2" || len(r.seen["ro-1"]) != 0 || len(r.seen["ro-2"]) != 0 {
				t.Errorf("rollouts: calls end %v, in flight %v / %v", r.calls[n-2:], r.seen["ro-1"], r.seen["ro-2"])
			}
			// The last document naming an object wins.
			if r.values["a"] != "3" {
				t.Errorf("configmap a = %q, want the last document's 3", r.values["a"])
			}
			if batches && (r.batches < 3 || r.batches > 10) {
				t.Errorf("%d batches for %d objects", r.batches, len(objs))
			}
			// Services go on their own.
			if !r.singles["web"] || batches && r.singles["cm-7"] {
				t.Errorf("sent alone: %v", r.singles)
			}
			// A batch's objects went together.
			if !batches {
				return
			}
			concurrent := false
			for _, others := range r.seen {
				concurrent = concurrent || len(others) > 0
			}
			if !concurrent {
				t.Error("no object was sent while another was in flight")
			}
		})
	}
}

func TestApplyAllCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := newRecorder()
	ap := r.applier(true)
	var errs int
	ap.applyAll(ctx, applyObjs(t, cmDoc("a", "default", "1"), cmDoc("b", "default", "1")), func(_ sourceObject, _ string, err error) {
		if err != nil {
			errs++
		}
	})
	if errs != 2 || len(r.calls) != 0 {
		t.Errorf("%d errors, %d calls after cancel", errs, len(r.calls))
	}
}

func TestIntegrationApplyMany(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	dir := t.TempDir()
	write := func(name, doc string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const n = 230
	var want strings.Builder
	want.WriteString("namespace/many created\n")
	for i := range n {
		write(fmt.Sprintf("cm-%03d.yaml", i), cmDoc(fmt.Sprintf("cm-%03d", i), "many", "1"))
		fmt.Fprintf(&want, "configmap/cm-%03d created\n", i)
	}
	write("cm-999-dup.yaml", cmDoc("cm-000", "many", "2")) // the last one wins
	want.WriteString("configmap/cm-000 configured\n")
	write("zz-ns.yaml", nsDoc("many"))
	if out := mustOK(t, ctl("", "apply", "-f", dir), "apply dir"); out != want.String() {
		t.Fatalf("apply dir printed:\n%s\nwant:\n%s", out, want.String())
	}
	if out := mustOK(t, ctl("", "get", "cm", "cm-000", "-n", "many", "-o", "jsonpath={.data.v}"), "get"); out != "2" {
		t.Errorf("cm-000 v = %q, want 2", out)
	}
	// Again: unchanged but the duplicate's two documents.
	out := mustOK(t, ctl("", "apply", "-f", dir), "apply dir again")
	if c := strings.Count(out, " unchanged\n"); c != n-1+1 || strings.Count(out, "\n") != n+2 {
		t.Errorf("apply again: %d unchanged:\n%s", c, out)
	}

	// One bad object among good ones: each reported in order, exit 1,
	// the good ones stored.
	r := ctl(cmDoc("good-1", "default", "1")+"---\n"+cmDoc("lost", "nowhere", "1")+"---\n"+cmDoc("good-2", "default", "1"), "apply", "-f", "-")
	if r.code != 1 || r.stdout != "configmap/good-1 created\nconfigmap/good-2 created\n" ||
		!strings.HasPrefix(r.stderr, "Error from server (NotFound): ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("apply with a missing namespace: %+v", r)
	}
	// Server dry run in batches writes nothing.
	r = ctl(cmDoc("dry", "default", "1")+"---\n"+cmDoc("good-1", "default", "9"), "apply", "-f", "-", "--dry-run=server")
	if r.code != 0 || r.stdout != "configmap/dry created (server dry run)\nconfigmap/good-1 configured (server dry run)\n" {
		t.Errorf("server dry run: %+v", r)
	}
	if r := ctl("", "get", "cm", "dry"); r.code != 1 {
		t.Errorf("dry run stored the object: %+v", r)
	}
}
