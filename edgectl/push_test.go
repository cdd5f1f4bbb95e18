package edgectl

import (
	"archive/tar"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/images/imagetest"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// startObjectStore runs a nats-server with the control plane's buckets
// (all that push needs) and returns its URL and a client.
func startObjectStore(t *testing.T) (string, *client.Client) {
	t.Helper()
	nenv := natstest.Start(t, "test")
	ns, nc := nenv.Server, nenv.Conn
	return ns.ClientURL(), client.New(nc)
}

// tarDir writes the files below dir into a tar file.
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPushImageArchives(t *testing.T) {
	url, cl := startObjectStore(t)
	ctx := context.Background()
	img := imagetest.Image(t, v1.Config{Entrypoint: []string{"/bin/hello"}},
		imagetest.Layer(t, imagetest.File{Name: "bin", Dir: true}, imagetest.File{Name: "bin/hello", Body: "#!/bin/sh\necho hello\n", Mode: 0o755}),
		imagetest.Layer(t, imagetest.File{Name: "etc", Dir: true}, imagetest.File{Name: "etc/motd", Body: "hi\n"}),
	)
	want, _ := img.Digest()
	dir := t.TempDir()

	// docker save format.
	dockerTar := filepath.Join(dir, "docker.tar")
	tag, _ := name.NewTag("busybox:v1")
	if err := tarball.WriteToFile(dockerTar, tag, img); err != nil {
		t.Fatal(err)
	}
	// OCI image layout, as a directory and as a tarball.
	layoutDir := filepath.Join(dir, "layout")
	if _, err := layout.Write(layoutDir, mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})); err != nil {
		t.Fatal(err)
	}
	ociTar := filepath.Join(dir, "oci.tar")
	tarDir(t, layoutDir, ociTar)

	for _, tc := range []struct{ file, ref string }{
		{dockerTar, "busybox:v1"},
		{ociTar, "localhost/oci:v1"},
		{layoutDir, "localhost/layout:v1"},
	} {
		r := runCtl(t, "", "--server", url, "push", tc.file, "--name", tc.ref)
		if r.code != 0 {
			t.Fatalf("push %s: exit %d: %s", tc.file, r.code, r.stderr)
		}
		re := regexp.MustCompile(`^pushed ` + regexp.QuoteMeta(tc.ref) + ` (sha256:[0-9a-f]{64}) \(([0-9]+) bytes, image\)\n$`)
		m := re.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("push %s: output %q", tc.file, r.stdout)
		}
		if m[1] != want.String() {
			t.Errorf("push %s: digest %s, want %s", tc.file, m[1], want)
		}
		if fi, _ := os.Stat(tc.file); !fi.IsDir() && m[2] != strconv.FormatInt(fi.Size(), 10) {
			t.Errorf("push %s: size %s, want the file's %d", tc.file, m[2], fi.Size())
		}
		if d, err := cl.ResolveImage(ctx, tc.ref); err != nil || d != want.String() {
			t.Errorf("resolve %s: %s, %v", tc.ref, d, err)
		}
	}

	// An agent's image store pulls it from there, without a registry.
	store, err := images.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Pull(ctx, "localhost/oci:v1", images.PullOptions{Source: images.StoreSource(cl, client.IsNotFound)})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(got.Dir, "rootfs", "etc", "motd")); err != nil || string(b) != "hi\n" {
		t.Errorf("pulled rootfs: %q, %v", b, err)
	}

	// Neither a module nor an image archive.
	junk := filepath.Join(dir, "junk.bin")
	os.WriteFile(junk, []byte("not an image"), 0o644)
	if r := runCtl(t, "", "--server", url, "push", junk, "--name", "junk:v1"); r.code != 1 || !strings.Contains(r.stderr, "neither a WebAssembly module") {
		t.Errorf("push junk: exit %d stderr %q", r.code, r.stderr)
	}
	// Modules still work.
	mod := filepath.Join(dir, "m.wasm")
	os.WriteFile(mod, []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	if r := runCtl(t, "", "--server", url, "push", mod, "--name", "mod:v1"); r.code != 0 || !regexp.MustCompile(`^pushed mod:v1 sha256:[0-9a-f]{64} \(8 bytes\)\n$`).MatchString(r.stdout) {
		t.Errorf("push module: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}
