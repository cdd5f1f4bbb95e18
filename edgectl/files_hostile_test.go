package edgectl

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// endless is a reader that never ends (a hostile stdin).
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// sparseFile creates a file of size bytes that uses no disk space.
func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// laughs is a billion-laughs YAML bomb inside a pod's args: 10 levels of
// anchors, each alias repeating the one before ten times (10^10 strings).
func laughs() string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Pod\nmetadata: {name: lol}\nx0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "x%d: &l%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	// The keys x0..x10 are unknown fields of a Pod: the alias bomb must be
	// caught where it is used, in a field of the right type.
	b.WriteString("spec:\n  containers:\n  - name: c\n    image: x\n    args: *l10\n")
	return b.String()
}

// typedBomb repeats a container of 1,000 env entries (aliases) 1,000 times:
// every alias fits the Pod type, so only the alias budget stops it.
func typedBomb() string {
	var b strings.Builder
	b.WriteString("x: &e {name: A, value: v}\ny: &c {name: c, image: i, env: [")
	b.WriteString(strings.Repeat("*e,", 1000))
	b.WriteString("]}\napiVersion: v1\nkind: Pod\nmetadata: {name: bomb}\nspec:\n  containers: [")
	b.WriteString(strings.Repeat("*c,", 1000))
	b.WriteString("]\n")
	return b.String()
}

// TestHostileFiles feeds edgectl's -f reading and decoding with hostile
// input: each is refused with a clear error, quickly and without growing
// the heap by more than the input allows.
func TestHostileFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	sparseFile(t, big, 100<<20)
	over := filepath.Join(dir, "over.yaml")
	sparseFile(t, over, int64(maxSourceBytes)+1)
	many := filepath.Join(dir, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range maxTotalSourceBytes/maxSourceBytes + 1 {
		sparseFile(t, filepath.Join(many, fmt.Sprintf("f%02d.yaml", i)), int64(maxSourceBytes))
	}
	file := func(name, data string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, data)
		return p
	}
	ns := "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
	for _, tc := range []struct {
		name  string
		path  string
		stdin string // used with path "-"
		want  string
	}{
		{"100 MB file", big, "", "big.yaml: larger than 4194304 bytes (4 MiB), the limit of one manifest file"},
		{"file one byte over the cap", over, "", "over.yaml: larger than 4194304 bytes"},
		{"17 files of 4 MiB", many, "", "hold more than 64 MiB together"},
		{"endless stdin", "-", "endless", "STDIN: larger than 4194304 bytes"},
		{"billion laughs (10 levels)", file("laughs.yaml", laughs()), "", "spec.containers[0].args[0]: expected string, got list"},
		{"alias bomb that type-checks", file("bomb.yaml", typedBomb()), "", "YAML aliases expand to more than 100000 nodes"},
		{"billion laughs in merge keys", file("merge.yaml", strings.Replace(laughs(), "args: *l10", "args: [x]\n    env: [{<<: *l10}]", 1)), "", "YAML aliases expand to more than 100000 nodes"},
		{"1M-deep flow YAML", file("deep.yaml", strings.Repeat("[", 1<<20)), "", "exceeded max depth of 10000"},
		{"100k-deep block YAML", file("block.yaml", strings.Repeat("- ", 100000)+"x\n"), "", "exceeded max depth of 10000"},
		{"70-deep object in a pod", file("deep70.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations: "+strings.Repeat("{a: ", 70)+"x"+strings.Repeat("}", 70)+"\n"), "", "metadata.annotations[a]: expected string, got object"},
		{"100k-deep JSON", file("deep.json", strings.Repeat(`{"a":`, 100000)), "", "deep.json"},
		{"invalid UTF-8", file("utf.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: \"caf\xe9\"}\n"), "", "utf.yaml: input is not valid UTF-8 (line 4, byte offset 65)"},
		{"invalid UTF-8 in JSON", file("utf.json", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\",\"labels\":{\"a\":\"\xff\"}}}"), "", "utf.json: metadata.labels.a: invalid value: not valid UTF-8"},
		{"1M empty documents", file("empty.yaml", strings.Repeat("---\n", 1<<20)), "", "more than 10000 documents or objects in one input"},
		{"20k documents", file("flood.yaml", strings.Repeat(ns+"---\n", 20000)), "", "more than 10000 documents or objects in one input"},
		{"List of 20k items", file("list.yaml", "apiVersion: v1\nkind: List\nitems:\n"+strings.Repeat("- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n", 20000)), "", "more than 10000 documents"},
		{"pod with 20k containers", file("ctrs.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"+strings.Repeat("  - {name: c, image: x}\n", 20000)), "", "spec.containers: too many: 20000 items, must have at most 10000"},
	} {
		var stdin = strings.NewReader(tc.stdin)
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		start := time.Now()
		var err error
		var srcs []manifestSource
		if tc.stdin == "endless" {
			srcs, err = readSources(endless{}, []string{tc.path}, false)
		} else {
			srcs, err = readSources(stdin, []string{tc.path}, false)
		}
		if err == nil {
			_, err = decodeSources(srcs)
		}
		took := time.Since(start)
		runtime.ReadMemStats(&ms1)
		if err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: error %q, want it to contain %q", tc.name, shortMsg(err.Error()), tc.want)
		}
		alloc := ms1.TotalAlloc - ms0.TotalAlloc
		t.Logf("%-32s %8v %6d MiB allocated  %s", tc.name, took.Round(time.Millisecond), alloc>>20, shortMsg(err.Error()))
		// A bomb that expanded would allocate gigabytes.
		if alloc > 1<<30 {
			t.Errorf("%s: %d MiB allocated", tc.name, alloc>>20)
		}
	}
}

func shortMsg(s string) string {
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}

// TestHostileFilesAtTheLimits checks that the caps leave room for real
// input: a 4 MiB file and 10,000 documents are read and decoded.
func TestHostileFilesAtTheLimits(t *testing.T) {
	dir := t.TempDir()
	doc := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
	data := strings.Repeat(doc+"---\n", manifests.MaxDocuments-1) + doc
	data += "#" + strings.Repeat("x", maxSourceBytes-len(data)-2) + "\n"
	p := filepath.Join(dir, "full.yaml")
	writeFile(t, p, data)
	srcs, err := readSources(strings.NewReader(""), []string{p}, false)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeSources(srcs)
	if err != nil || len(objs) != manifests.MaxDocuments {
		t.Fatalf("%d objects, %v", len(objs), err)
	}
}
