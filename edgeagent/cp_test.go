package edgeagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// localTree makes a directory tree with a nested directory, an empty
// file, a larger random file and a relative link, and returns its path.
func localTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	big := make([]byte, 3<<20+17)
	rand.Read(big)
	for name, data := range map[string][]byte{
		"a.txt":            []byte("alpha\n"),
		"empty":            nil,
		"sub/deeper/b.bin": big,
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/deeper/b.bin", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// treeOf describes a tree: every path with its type, mode and content
// digest (links with their target).
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			to, _ := os.Readlink(p)
			out[rel] = "link " + to
		case d.IsDir():
			out[rel] = "dir"
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %d %x", info.Mode().Perm(), len(data), data[:min(len(data), 16)])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, want, got string) {
	t.Helper()
	w, g := treeOf(t, want), treeOf(t, got)
	if fmt.Sprint(w) != fmt.Sprint(g) {
		t.Fatalf("trees differ:\n want %v\n got  %v", w, g)
	}
}

// upload copies the local path src into the pod at dest.
func upload(ctx context.Context, cl *client.Client, pod, container, src, dest string) error {
	root, err := os.OpenRoot(filepath.Dir(src))
	if err != nil {
		return err
	}
	defer root.Close()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(client.WriteTar(pw, root, filepath.Base(src), filepath.Base(src), client.MaxCopyBytes))
	}()
	defer pr.Close()
	return cl.CopyToPod(ctx, "node-1", client.CopyRequest{Namespace: "default", Pod: pod, Container: container, Path: dest}, pr)
}

// download copies the pod's src into the new local directory dir.
func download(ctx context.Context, cl *client.Client, pod, src, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var buf bytes.Buffer
	if err := cl.CopyFromPod(ctx, "node-1", client.CopyRequest{Namespace: "default", Pod: pod, Path: src}, &buf); err != nil {
		return err
	}
	_, err = client.ExtractTar(&buf, root, ".", "", client.ExtractOptions{Limit: client.MaxCopyBytes})
	return err
}

func wantCopyError(t *testing.T, what string, err error, code, msg string) {
	t.Helper()
	if client.CodeOf(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: %v, want %s %q", what, err, code, msg)
	}
}

// TestCopyWasmVolume copies to and from the emptyDir volume of a wasm
// pod: only its volumes can be named, links cannot lead out of them.
func TestCopyWasmVolume(t *testing.T) {
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := os.Open(testmodules.Path(t, "sleep"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := cp.cl.PushModule(ctx, "sleep:v1", f); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	startAgent(t, cp.url, dataDir)
	pod := handlerPod("files", manifests.RuntimeWasm, "sleep:v1")
	// A size limit: the API decodes "emptyDir: {}" as no source at all.
	limit := manifests.Quantity("64Mi")
	pod.Spec.Volumes = []manifests.Volume{{Name: "data", VolumeSource: manifests.VolumeSource{EmptyDir: &manifests.EmptyDirVolumeSource{SizeLimit: &limit}}}}
	pod.Spec.Containers[0].VolumeMounts = []manifests.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "data", MountPath: "/ro", ReadOnly: true}}
	stored := cp.assign(t, pod)
	cp.runningPod(t, "files")
	vol := filepath.Join(dataDir, "pods", "default_files_"+stored.UID, "volumes", "data")

	// A directory into the volume, and back.
	tree := localTree(t)
	if err := upload(ctx, cp.cl, "files", "", tree, "/data"); err != nil {
		t.Fatal(err)
	}
	sameTree(t, tree, filepath.Join(vol, "tree"))
	back := t.TempDir()
	if err := download(ctx, cp.cl, "files", "/data/tree", back); err != nil {
		t.Fatal(err)
	}
	sameTree(t, tree, filepath.Join(back, "tree"))
	// A file under a new name.
	if err := upload(ctx, cp.cl, "files", "main", filepath.Join(tree, "a.txt"), "/data/renamed.txt"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "renamed.txt")); err != nil || string(b) != "alpha\n" {
		t.Fatalf("renamed.txt: %q, %v", b, err)
	}

	// Links leading out of the volume, however they are made.
	if err := os.Symlink("/etc", filepath.Join(vol, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../../../..", filepath.Join(vol, "up")); err != nil {
		t.Fatal(err)
	}
	marker := "pwned-" + hex.EncodeToString([]byte(t.Name()))[:8]
	for _, dest := range []string{"/data/abs", "/data/up/tmp"} {
		err := upload(ctx, cp.cl, "files", "", filepath.Join(tree, "a.txt"), dest+"/"+marker)
		wantCopyError(t, "upload through "+dest, err, client.CodeForbidden, "leads out of the container's filesystem")
	}
	if _, err := os.Stat("/tmp/" + marker); err == nil {
		t.Fatal("a copy through a link wrote outside the volume")
	}
	err = download(ctx, cp.cl, "files", "/data/up/etc/hostname", t.TempDir())
	wantCopyError(t, "download through a link", err, client.CodeForbidden, "/data/up/etc/hostname: a path leads out")

	// Paths outside the volumes, missing paths, read-only mounts, limits.
	err = upload(ctx, cp.cl, "files", "", tree, "/etc")
	wantCopyError(t, "upload outside the volumes", err, client.CodeInvalid,
		"/etc is not in a volume of wasm container main: a wasm container sees only its volumes, and its volumes are mounted at /data, /ro")
	err = download(ctx, cp.cl, "files", "/data/nothing", t.TempDir())
	wantCopyError(t, "missing path", err, client.CodeNotFound, "/data/nothing: no such file or directory")
	err = upload(ctx, cp.cl, "files", "", tree, "/data/no/such/dir")
	wantCopyError(t, "missing parent", err, client.CodeNotFound, "/data/no/such: no such file or directory")
	err = upload(ctx, cp.cl, "files", "", tree, "/ro/x")
	wantCopyError(t, "read-only mount", err, client.CodeForbidden, "/ro/x is in volume data, mounted read-only")
	err = upload(ctx, cp.cl, "files", "sidecar", tree, "/data")
	wantCopyError(t, "no such container", err, client.CodeInvalid, "container sidecar is not valid for pod files")
	err = download(ctx, cp.cl, "ghost", "/data", t.TempDir())
	wantCopyError(t, "no such pod", err, client.CodeNotFound, `pod "ghost" not found on node node-1`)

	old := copyMaxBytes.Load()
	copyMaxBytes.Store(1 << 20)
	t.Cleanup(func() { copyMaxBytes.Store(old) })
	err = upload(ctx, cp.cl, "files", "", tree, "/data/second")
	wantCopyError(t, "upload over the limit", err, client.CodeInvalid, "more than 1048576 bytes (the limit)")
	err = download(ctx, cp.cl, "files", "/data/tree", t.TempDir())
	wantCopyError(t, "download over the limit", err, client.CodeInvalid, "more than 1048576 bytes (the limit)")
	noTunnels(t)
}

// TestCopyOCI copies to and from the root filesystem of a runc container:
// what is copied in is what the container sees.
func TestCopyOCI(t *testing.T) {
	image := echoImage(t)
	cp := startControlPlane(t)
	startOCIAgent(t, cp.url)
	cp.assign(t, echoPod("echo", image))
	cp.runningPod(t, "echo")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	tree := localTree(t)
	if err := upload(ctx, cp.cl, "echo", "", tree, "/tmp"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code, err := cp.cl.Exec(ctx, "node-1", client.ExecRequest{Namespace: "default", Pod: "echo", Command: []string{"cat", "/tmp/tree/a.txt"}},
		client.ExecStreams{Stdout: &out})
	if err != nil || code != 0 || out.String() != "alpha\n" {
		t.Fatalf("the container sees %q (exit %d, %v)", out.String(), code, err)
	}
	back := t.TempDir()
	if err := download(ctx, cp.cl, "echo", "/tmp/tree", back); err != nil {
		t.Fatal(err)
	}
	sameTree(t, tree, filepath.Join(back, "tree"))
	// A file of the image.
	if err := download(ctx, cp.cl, "echo", "/srv/motd", back); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(back, "motd")); err != nil || string(b) != "from the image\n" {
		t.Fatalf("motd: %q, %v", b, err)
	}

	// The container's link /esc leads out of its root filesystem.
	marker := "pwned-" + hex.EncodeToString([]byte(t.Name()))[:8]
	err = upload(ctx, cp.cl, "echo", "", filepath.Join(tree, "a.txt"), "/esc/tmp/"+marker)
	wantCopyError(t, "upload through /esc", err, client.CodeForbidden, "leads out of the container's filesystem")
	if _, err := os.Stat("/tmp/" + marker); err == nil {
		t.Fatal("a copy through a link wrote on the host")
	}
	err = download(ctx, cp.cl, "echo", "/esc/etc/hostname", t.TempDir())
	wantCopyError(t, "download through /esc", err, client.CodeForbidden, "leads out of the container's filesystem")
	err = download(ctx, cp.cl, "echo", "/", t.TempDir())
	wantCopyError(t, "whole root", err, client.CodeInvalid, "copying the whole root filesystem is not supported")
	noTunnels(t)
}
