package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/images/imagetest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// testImage has a base layer with a file to white out, a symlink, a hard
// link, an executable and a file owned by 1000:1000, and a second layer
// deleting one file and adding another.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	base := imagetest.Layer(t,
		imagetest.File{Name: "bin", Dir: true},
		imagetest.File{Name: "bin/run", Body: "#!/bin/sh\necho hi\n", Mode: 0o755},
		imagetest.File{Name: "etc", Dir: true},
		imagetest.File{Name: "etc/hello", Body: "hello\n"},
		imagetest.File{Name: "etc/hello-link", Symlink: "hello"},
		imagetest.File{Name: "etc/hello-hard", HardLink: "etc/hello"},
		imagetest.File{Name: "etc/gone", Body: "deleted in layer 2\n"},
		imagetest.File{Name: "home/user/owned", Body: "mine\n", UID: 1000, GID: 1000},
	)
	top := imagetest.Layer(t,
		imagetest.File{Name: "etc/.wh.gone"},
		imagetest.File{Name: "etc/new", Body: "new\n"},
	)
	return imagetest.Image(t, v1.Config{Entrypoint: []string{"/bin/run"}, Cmd: []string{"arg"}, Env: []string{"A=1"}, WorkingDir: "/etc"}, base, top)
}

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.retryDelay = 10 * time.Millisecond
	return s
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func checkRootfs(t *testing.T, dir string) {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(rootfs, p))
		if err != nil {
			t.Errorf("read %s: %v", p, err)
		}
		return string(b)
	}
	if got := read("etc/hello"); got != "hello\n" {
		t.Errorf("etc/hello = %q", got)
	}
	if got := read("etc/new"); got != "new\n" {
		t.Errorf("etc/new = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whiteout not applied: etc/gone: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "etc/hello-link")); err != nil || target != "hello" {
		t.Errorf("symlink: %q, %v", target, err)
	}
	fi, err := os.Stat(filepath.Join(rootfs, "bin/run"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/run: %v, %v", fi, err)
	}
	a, err1 := os.Stat(filepath.Join(rootfs, "etc/hello"))
	b, err2 := os.Stat(filepath.Join(rootfs, "etc/hello-hard"))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("hard link: %v %v", err1, err2)
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(filepath.Join(rootfs, "home/user/owned"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("owner %d:%d, want 1000:1000", st.Uid, st.Gid)
		}
	}
	var cf v1.ConfigFile
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cf); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%v %v %v %s", cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Env, cf.Config.WorkingDir) != "[/bin/run] [arg] [A=1] /etc" {
		t.Errorf("config: %+v", cf.Config)
	}
}

func TestPullPolicies(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	img := testImage(t)
	ref := reg.Push(t, "app:v1", img)
	dir := t.TempDir()
	s := openStore(t, dir)

	got, err := s.Pull(ctx, ref, PullOptions{Policy: PullIfNotPresent})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, img) || got.Ref != ref || got.Dir != filepath.Join(dir, "unpacked", strings.TrimPrefix(got.Digest, "sha256:")) || got.Size <= 0 {
		t.Errorf("image %+v, want digest %s", got, digestOf(t, img))
	}
	checkRootfs(t, got.Dir)

	n := reg.Requests()
	if again, err := s.Pull(ctx, ref, PullOptions{Policy: PullIfNotPresent}); err != nil || again.Digest != got.Digest {
		t.Fatalf("second pull: %+v, %v", again, err)
	}
	if reg.Requests() != n {
		t.Errorf("IfNotPresent pull of a present image made %d registry requests", reg.Requests()-n)
	}
	if again, err := s.Pull(ctx, ref, PullOptions{Policy: PullAlways}); err != nil || again.Digest != got.Digest {
		t.Fatalf("Always pull: %+v, %v", again, err)
	}
	if reg.Requests() == n {
		t.Error("Always pull did not ask the registry")
	}

	// A new tag content with Always: the new digest is pulled.
	img2 := imagetest.Image(t, v1.Config{Entrypoint: []string{"/bin/other"}}, imagetest.Layer(t, imagetest.File{Name: "x", Body: "x"}))
	reg.Push(t, "app:v1", img2)
	if again, err := s.Pull(ctx, ref, PullOptions{Policy: PullAlways}); err != nil || again.Digest != digestOf(t, img2) {
		t.Fatalf("Always pull after re-tag: %+v, %v", again, err)
	}
	reg.Push(t, "app:v1", img)
	if again, err := s.Pull(ctx, ref, PullOptions{Policy: PullAlways}); err != nil || again.Digest != got.Digest {
		t.Fatalf("Always pull back: %+v, %v", again, err)
	}

	// Offline: the index persists; Never and IfNotPresent work without the
	// registry, Always fails.
	reg.Close()
	s2 := openStore(t, dir)
	for _, p := range []PullPolicy{PullNever, PullIfNotPresent} {
		if again, err := s2.Pull(ctx, ref, PullOptions{Policy: p}); err != nil || again.Digest != got.Digest || again.Dir != got.Dir {
			t.Errorf("%s pull offline: %+v, %v", p, again, err)
		}
	}
	// By digest, too.
	byDigest := reg.Host + "/app@" + got.Digest
	if again, err := s2.Pull(ctx, byDigest, PullOptions{Policy: PullNever}); err != nil || again.Digest != got.Digest {
		t.Errorf("pull by digest offline: %+v, %v", again, err)
	}
	if _, err := s2.Pull(ctx, ref, PullOptions{Policy: PullAlways}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Always pull offline: %v, want ErrUnreachable", err)
	}
	if _, err := s2.Pull(ctx, reg.Host+"/other:v1", PullOptions{Policy: PullNever}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not present with pull policy Never") {
		t.Errorf("Never pull of an absent image: %v", err)
	}
	if l := s2.List(); len(l) != 2 || l[0].Digest == l[1].Digest {
		t.Errorf("List: %+v", l)
	}
}

func TestPullPrivateRegistry(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{User: "alice", Password: "s3cret"})
	img := testImage(t)
	ref := reg.Push(t, "private/app:v1", img)
	s := openStore(t, t.TempDir())

	if _, err := s.Pull(ctx, ref, PullOptions{}); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), ref) {
		t.Errorf("anonymous pull: %v, want ErrUnauthorized naming the ref", err)
	}
	wrong := imagetest.DockerConfig(reg.Host, "alice", "nope")
	if _, err := s.Pull(ctx, ref, PullOptions{DockerConfigs: [][]byte{wrong}}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("pull with a wrong password: %v, want ErrUnauthorized", err)
	}
	other := imagetest.DockerConfig("elsewhere.example:5000", "bob", "x")
	right := []byte(fmt.Sprintf(`{"auths":{"http://%s/v2/":{"username":"alice","password":"s3cret"}}}`, reg.Host))
	got, err := s.Pull(ctx, ref, PullOptions{DockerConfigs: [][]byte{other, right}})
	if err != nil {
		t.Fatal(err)
	}
	checkRootfs(t, got.Dir)
	if _, err := s.Pull(ctx, ref, PullOptions{Policy: PullAlways, DockerConfigs: [][]byte{imagetest.DockerConfig(reg.Host, "alice", "s3cret")}}); err != nil {
		t.Errorf("pull with auth: %v", err)
	}
	if _, err := s.Pull(ctx, ref, PullOptions{Policy: PullAlways, DockerConfigs: [][]byte{[]byte("{")}}); err == nil {
		t.Error("pull with a broken docker config succeeded")
	}
}

func TestPullErrors(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	reg.Push(t, "app:v1", testImage(t))
	s := openStore(t, t.TempDir())
	for _, ref := range []string{reg.Host + "/app:v2", reg.Host + "/nope:v1"} {
		_, err := s.Pull(ctx, ref, PullOptions{})
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), ref) {
			t.Errorf("pull %s: %v, want ErrNotFound naming the ref", ref, err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = s.Pull(ctx, closed+"/app:v1", PullOptions{})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), closed+"/app:v1") {
		t.Errorf("pull from a closed port: %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 10*time.Second {
		t.Errorf("unreachable pull took %v: want 3 tries with a short backoff", d)
	}
	if _, err := s.Pull(ctx, "UPPER/case", PullOptions{}); err == nil {
		t.Error("invalid reference accepted")
	}
	if _, err := s.Pull(ctx, reg.Host+"/app:v1", PullOptions{Policy: "Sometimes"}); err == nil {
		t.Error("unknown policy accepted")
	}
}

func TestPullIndexPicksPlatform(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	mine := testImage(t)
	other := imagetest.Image(t, v1.Config{}, imagetest.Layer(t, imagetest.File{Name: "wrong", Body: "arch"}))
	otherArch := "s390x"
	if runtime.GOARCH == otherArch {
		otherArch = "arm64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref := reg.PushIndex(t, "multi:v1", idx)
	s := openStore(t, t.TempDir())
	got, err := s.Pull(ctx, ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, mine) {
		t.Errorf("digest %s, want the linux/%s image %s", got.Digest, runtime.GOARCH, digestOf(t, mine))
	}
	checkRootfs(t, got.Dir)
}

func TestPullConcurrentSharesWork(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	img := testImage(t)
	ref := reg.Push(t, "app:v1", img)
	s := openStore(t, t.TempDir())
	var wg sync.WaitGroup
	res := make([]Image, 4)
	errs := make([]error, 4)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = s.Pull(ctx, ref, PullOptions{Policy: PullIfNotPresent})
		}()
	}
	wg.Wait()
	for i := range res {
		if errs[i] != nil || res[i].Dir != res[0].Dir {
			t.Errorf("pull %d: %+v, %v", i, res[i], errs[i])
		}
	}
	checkRootfs(t, res[0].Dir)
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		if n := reg.Count("GET /v2/app/blobs/" + d.String()); n != 1 {
			t.Errorf("layer %s fetched %d times, want 1", d, n)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestUnpackRefusesPathEscape(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	outside := t.TempDir()
	up := strings.Repeat("../", 20)
	cases := map[string]v1.Image{
		"dotdot": imagetest.Image(t, v1.Config{}, imagetest.Layer(t,
			imagetest.File{Name: up + outside + "/pwned", Body: "x"},
		)),
		"symlink": imagetest.Image(t, v1.Config{}, imagetest.Layer(t,
			imagetest.File{Name: "escape", Symlink: outside},
			imagetest.File{Name: "escape/pwned", Body: "x"},
		)),
		"relsymlink": imagetest.Image(t, v1.Config{}, imagetest.Layer(t,
			imagetest.File{Name: "a", Dir: true},
			imagetest.File{Name: "a/up", Symlink: up + outside},
			imagetest.File{Name: "a/up/pwned", Body: "x"},
		)),
		"hardlink": imagetest.Image(t, v1.Config{}, imagetest.Layer(t,
			imagetest.File{Name: "passwd", HardLink: up + "etc/passwd"},
		)),
		"symlink-lower": imagetest.Image(t, v1.Config{},
			imagetest.Layer(t, imagetest.File{Name: "escape", Symlink: outside}),
			imagetest.Layer(t, imagetest.File{Name: "escape/pwned", Body: "x"}),
		),
	}
	s := openStore(t, t.TempDir())
	for name, img := range cases {
		got, err := s.Pull(ctx, reg.Push(t, "evil:"+name, img), PullOptions{})
		if name == "dotdot" && err == nil {
			t.Errorf("%s: image unpacked", name)
		}
		if err == nil {
			// Escaping links are dropped (files below them then land in
			// plain directories inside the rootfs).
			if _, err := os.Lstat(filepath.Join(got.Dir, "rootfs", "passwd")); err == nil {
				t.Errorf("%s: escaping hard link extracted", name)
			}
			for _, p := range []string{"escape", "a/up"} {
				if fi, err := os.Lstat(filepath.Join(got.Dir, "rootfs", p)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
					if target, _ := os.Readlink(filepath.Join(got.Dir, "rootfs", p)); strings.Contains(target, "..") {
						t.Errorf("%s: escaping symlink %s -> %s extracted", name, p, target)
					}
				}
			}
		}
		if _, err := os.Stat(filepath.Join(outside, "pwned")); err == nil {
			t.Fatalf("%s: a file was written outside the rootfs", name)
		}
	}
}

// TestExtractTarRefusesEscape feeds extractTar archives mutate.Extract would
// not produce: its own checks must hold.
func TestExtractTarRefusesEscape(t *testing.T) {
	outside := t.TempDir()
	cases := map[string][]*tar.Header{
		"dotdot":       {{Name: "../../../../../../../../" + outside + "/pwned", Typeflag: tar.TypeReg, Mode: 0o644}},
		"abs-symlink":  {{Name: "escape", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "escape/pwned", Typeflag: tar.TypeReg, Mode: 0o644}},
		"rel-symlink":  {{Name: "escape", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../.." + outside}, {Name: "escape/pwned", Typeflag: tar.TypeReg, Mode: 0o644}},
		"symlink-file": {{Name: "pwned", Typeflag: tar.TypeSymlink, Linkname: outside + "/pwned"}, {Name: "pwned", Typeflag: tar.TypeReg, Mode: 0o644}},
		"hardlink":     {{Name: "passwd", Typeflag: tar.TypeLink, Linkname: "../../../../../../../etc/passwd"}},
	}
	for name, hdrs := range cases {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
		}
		tw.Close()
		dir := t.TempDir()
		err := extractTar(context.Background(), &buf, dir)
		if _, serr := os.Stat(filepath.Join(outside, "pwned")); serr == nil {
			t.Fatalf("%s: wrote outside the root", name)
		}
		if name == "symlink-file" {
			// The symlink is replaced by the file, inside the root.
			if fi, err2 := os.Lstat(filepath.Join(dir, "pwned")); err != nil || err2 != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s: %v, %v", name, err, err2)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: extracted without an error", name)
		}
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	shared := imagetest.Layer(t, imagetest.File{Name: "shared", Body: strings.Repeat("s", 4096)})
	a := imagetest.Image(t, v1.Config{Cmd: []string{"a"}}, shared, imagetest.Layer(t, imagetest.File{Name: "a", Body: "a"}))
	b := imagetest.Image(t, v1.Config{Cmd: []string{"b"}}, shared, imagetest.Layer(t, imagetest.File{Name: "b", Body: strings.Repeat("b", 8192)}))
	refA, refB := reg.Push(t, "a:v1", a), reg.Push(t, "b:v1", b)
	s := openStore(t, t.TempDir())
	imgA, err := s.Pull(ctx, refA, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	imgB, err := s.Pull(ctx, refB, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blobs := func() map[string]bool {
		m := map[string]bool{}
		entries, _ := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
		for _, e := range entries {
			m[e.Name()] = true
		}
		return m
	}
	if n := len(blobs()); n != 7 { // 2 manifests, 2 configs, 3 layers
		t.Errorf("%d blobs, want 7", n)
	}
	freed, err := s.GC(ctx, []string{imgA.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if freed < 8192 { // at least b's unpacked file
		t.Errorf("freed %d bytes", freed)
	}
	if _, err := os.Stat(imgB.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("image b still unpacked: %v", err)
	}
	if _, err := os.Stat(filepath.Join(imgA.Dir, "rootfs", "shared")); err != nil {
		t.Errorf("kept image a damaged: %v", err)
	}
	left := blobs()
	sharedDigest, _ := shared.Digest()
	if len(left) != 4 || !left[sharedDigest.Hex] || !left[strings.TrimPrefix(imgA.Digest, "sha256:")] {
		t.Errorf("blobs left: %v", left)
	}
	if _, err := s.Pull(ctx, refB, PullOptions{Policy: PullNever}); !errors.Is(err, ErrNotFound) {
		t.Errorf("ref of a collected image: %v", err)
	}
	if _, err := s.Pull(ctx, refA, PullOptions{Policy: PullNever}); err != nil {
		t.Errorf("kept image: %v", err)
	}
	// Pulling b again fetches only what GC removed.
	n := reg.Count("GET /v2/b/blobs/" + sharedDigest.String())
	if _, err := s.Pull(ctx, refB, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if reg.Count("GET /v2/b/blobs/"+sharedDigest.String()) != n {
		t.Error("the shared layer kept in the cache was fetched again")
	}
	if _, err := s.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if left := blobs(); len(left) != 0 || len(s.List()) != 0 {
		t.Errorf("after GC of everything: blobs %v, images %v", left, s.List())
	}
}

// memSource is a Source holding tags and blobs in memory.
type memSource struct {
	tags  map[string]string
	blobs map[string][]byte
}

func (m *memSource) Resolve(_ context.Context, ref string) (string, error) {
	d, ok := m.tags[ref]
	if !ok {
		return "", fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return d, nil
}

func (m *memSource) Fetch(_ context.Context, digest string, w io.Writer) error {
	b, ok := m.blobs[digest]
	if !ok {
		return fmt.Errorf("blob %s: %w", digest, ErrNotFound)
	}
	_, err := io.Copy(w, bytes.NewReader(b))
	return err
}

func (m *memSource) add(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	raw, _ := img.RawManifest()
	cfg, _ := img.RawConfigFile()
	cfgName, _ := img.ConfigName()
	m.blobs[digestOf(t, img)] = raw
	m.blobs[cfgName.String()] = cfg
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		m.blobs[d.String()] = b
	}
	m.tags[ref] = digestOf(t, img)
}

func TestPullFromSourceFirst(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	img := testImage(t)
	src := &memSource{tags: map[string]string{}, blobs: map[string][]byte{}}
	// "localhost/..." so that a fallback to a registry stays on loopback.
	src.add(t, "localhost/app:v1", img)
	s := openStore(t, t.TempDir())
	got, err := s.Pull(ctx, "localhost/app:v1", PullOptions{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, img) {
		t.Errorf("digest %s", got.Digest)
	}
	checkRootfs(t, got.Dir)
	// Unknown to the source: the registry is used.
	ref := reg.Push(t, "app:v2", img)
	if got, err := s.Pull(ctx, ref, PullOptions{Source: src}); err != nil || got.Digest != digestOf(t, img) {
		t.Errorf("fallback to the registry: %+v, %v", got, err)
	}
	// A tag pointing at something that is not an image manifest.
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	sum := sha256.Sum256(wasm)
	src.blobs["sha256:"+hex.EncodeToString(sum[:])] = wasm
	src.tags[reg.Host+"/mod:v1"] = "sha256:" + hex.EncodeToString(sum[:])
	_, err = s.Pull(ctx, reg.Host+"/mod:v1", PullOptions{Source: src})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not an image manifest") {
		t.Errorf("pull of a wasm module as an image: %v", err)
	}
}

func TestPullBusyboxImageRuns(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	ref := reg.Push(t, "busybox:v1", imagetest.Busybox(t, v1.Config{Cmd: []string{"sh"}}))
	s := openStore(t, t.TempDir())
	img, err := s.Pull(ctx, ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(img.Dir, "rootfs", "bin", "sh"), "-c", "echo ok").CombinedOutput()
	if err != nil || string(out) != "ok\n" {
		t.Errorf("rootfs/bin/sh: %q, %v", out, err)
	}
	if fi, err := os.Stat(filepath.Join(img.Dir, "rootfs", "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("rootfs/tmp: %v, %v", fi.Mode(), err)
	}
}

func TestPullRetriesTransientErrors(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	img := testImage(t)
	ref := reg.Push(t, "app:v1", img)
	s := openStore(t, t.TempDir())

	reg.FailNext(2, http.StatusServiceUnavailable)
	got, err := s.Pull(ctx, ref, PullOptions{})
	if err != nil {
		t.Fatalf("pull after two 503s: %v", err)
	}
	checkRootfs(t, got.Dir)

	reg.FailNext(1000, http.StatusServiceUnavailable)
	n := reg.Requests()
	if _, err := s.Pull(ctx, ref, PullOptions{Policy: PullAlways}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("pull from a failing registry: %v, want ErrUnreachable", err)
	}
	if tries := reg.Requests() - n; tries < pullTries {
		t.Errorf("%d requests, want at least %d tries", tries, pullTries)
	}
	reg.FailNext(0, 0)
}
