package client_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
)

type entry struct {
	name, link, body string
	typ              byte
}

func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			h.Mode = 0o555
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// extractIn extracts stream into a fresh directory "root" of a temporary
// directory, and returns both.
func extractIn(t testing.TB, stream []byte, top string, opts client.ExtractOptions) (parent, dir string, skipped []string, err error) {
	parent = t.TempDir()
	dir = filepath.Join(parent, "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	skipped, err = client.ExtractTar(bytes.NewReader(stream), root, ".", top, opts)
	return parent, dir, skipped, err
}

func TestExtractTar(t *testing.T) {
	opts := client.ExtractOptions{Limit: 1 << 20}
	stream := tarOf(t,
		entry{name: "site/", typ: tar.TypeDir},
		entry{name: "site/ro/", typ: tar.TypeDir},
		entry{name: "site/ro/index.html", body: "hi", typ: tar.TypeReg},
		entry{name: "site/ok", link: "ro/index.html", typ: tar.TypeSymlink},
		entry{name: "site/out", link: "../../etc/passwd", typ: tar.TypeSymlink},
		entry{name: "site/abs", link: "/etc/passwd", typ: tar.TypeSymlink},
	)
	_, dir, skipped, err := extractIn(t, stream, "renamed", opts)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "renamed", "ok")); err != nil || string(b) != "hi" {
		t.Fatalf("renamed/ok: %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "renamed", "ro")); err != nil || st.Mode().Perm() != 0o555 {
		t.Fatalf("read-only directory: %v, %v", st, err)
	}
	if len(skipped) != 2 || !strings.Contains(skipped[0], "renamed/out -> ../../etc/passwd") || !strings.Contains(skipped[1], "renamed/abs -> /etc/passwd") {
		t.Fatalf("skipped %q", skipped)
	}
	// Any link is kept when asked (a container's root filesystem).
	_, dir, skipped, err = extractIn(t, stream, "", client.ExtractOptions{Limit: 1 << 20, AnyLinks: true})
	if err != nil || len(skipped) != 0 {
		t.Fatalf("any links: %v, skipped %q", err, skipped)
	}
	if to, err := os.Readlink(filepath.Join(dir, "site", "abs")); err != nil || to != "/etc/passwd" {
		t.Fatalf("site/abs: %q, %v", to, err)
	}

	for _, tc := range []struct {
		name     string
		entries  []entry
		msg      string
		anyLinks bool
	}{
		{"dot-dot", []entry{{name: "../evil", body: "x", typ: tar.TypeReg}}, `tar entry "../evil": not a relative path`, false},
		{"absolute", []entry{{name: "/etc/evil", body: "x", typ: tar.TypeReg}}, `tar entry "/etc/evil": not a relative path`, false},
		// A link planted first (kept, as in a container's root
		// filesystem), then a file written through it.
		{"through a link", []entry{{name: "a/", typ: tar.TypeDir}, {name: "a/up", link: "../..", typ: tar.TypeSymlink}, {name: "a/up/evil", body: "x", typ: tar.TypeReg}}, "escapes", true},
		{"too large", []entry{{name: "big", body: strings.Repeat("x", 2<<20), typ: tar.TypeReg}}, "more than 1048576 bytes (the limit)", false},
	} {
		parent, _, _, err := extractIn(t, tarOf(t, tc.entries...), "", client.ExtractOptions{Limit: opts.Limit, AnyLinks: tc.anyLinks})
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
		if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
			t.Errorf("%s: wrote outside the root", tc.name)
		}
	}
}

// FuzzExtractTar: whatever the stream, nothing is written outside the root.
func FuzzExtractTar(f *testing.F) {
	f.Add(tarOf(f, entry{name: "a/", typ: tar.TypeDir}, entry{name: "a/b", body: "x", typ: tar.TypeReg}))
	f.Add(tarOf(f, entry{name: "l", link: "..", typ: tar.TypeSymlink}, entry{name: "l/x", body: "x", typ: tar.TypeReg}))
	f.Add(tarOf(f, entry{name: "../x", body: "x", typ: tar.TypeReg}))
	f.Fuzz(func(t *testing.T, stream []byte) {
		parent, _, _, _ := extractIn(t, stream, "", client.ExtractOptions{Limit: 1 << 16, AnyLinks: true})
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "root" {
			t.Fatalf("outside the root: %v", entries)
		}
	})
}
