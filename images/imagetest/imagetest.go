// Package imagetest builds small OCI images from files and serves them from
// an in-process registry on loopback, for tests.
package imagetest

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one entry of a layer.
type File struct {
	Name     string
	Body     string
	Mode     int64  // permission bits; default 0644 (0755 for directories)
	Dir      bool   // a directory
	Symlink  string // a symbolic link to this target
	HardLink string // a hard link to this entry of the layer
	UID, GID int
}

// Layer builds a gzip-compressed layer holding files, in order. A file
// named "dir/.wh.x" is a whiteout of x in lower layers.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag = tar.TypeDir
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Symlink != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Symlink, 0o777
		case f.HardLink != "":
			h.Typeflag, h.Linkname = tar.TypeLink, f.HardLink
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Body))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("layer: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, f.Body); err != nil {
				t.Fatalf("layer: %v", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("layer: %v", err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	return l
}

// Image builds an image with the given config and layers (bottom first).
func Image(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatalf("image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("image: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("image: %v", err)
	}
	return img
}

// BusyboxApplets are the applets Busybox links to /bin/busybox.
var BusyboxApplets = []string{"sh", "sleep", "cat", "echo", "env", "ls", "head", "dd", "nc", "wget", "httpd", "true", "false", "id", "mkdir", "rm", "touch", "pwd", "hostname", "ps", "kill", "grep", "wc", "seq", "yes"}

// Busybox builds an image of the static busybox of this machine
// (/bin/busybox) with its applets linked in /bin, /tmp, /etc/passwd and
// /etc/group, and cfg as config (Entrypoint/Cmd empty: give them in cfg).
// It fails the test when /bin/busybox is missing.
func Busybox(t testing.TB, cfg v1.Config) v1.Image {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox image: a static /bin/busybox is required (apt-get install busybox-static): %v", err)
	}
	files := []File{
		{Name: "bin", Dir: true},
		{Name: "bin/busybox", Body: string(bin), Mode: 0o755},
		{Name: "etc", Dir: true},
		{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"},
		{Name: "etc/group", Body: "root:x:0:\nnogroup:x:65534:\n"},
		{Name: "tmp", Dir: true, Mode: 0o1777},
		{Name: "root", Dir: true, Mode: 0o700},
	}
	for _, a := range BusyboxApplets {
		files = append(files, File{Name: "bin/" + a, Symlink: "busybox"})
	}
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	return Image(t, cfg, Layer(t, files...))
}

// Registry is an in-process OCI registry on 127.0.0.1 that counts requests.
type Registry struct {
	// Host is host:port, to use in references (Host + "/repo:tag").
	Host string
	srv  *httptest.Server
	user string
	pass string

	mu       sync.Mutex
	requests int
	paths    map[string]int
	failN    int
	failCode int
}

// RegistryOptions: with User set, every request needs basic auth.
type RegistryOptions struct {
	User, Password string
}

// NewRegistry starts a registry; it stops at the end of the test.
func NewRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	r := &Registry{user: opts.User, pass: opts.Password, paths: map[string]int{}}
	reg := registry.New(registry.Logger(discardLogger()))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests++
		r.paths[req.Method+" "+req.URL.Path]++
		fail := 0
		if r.failN > 0 {
			r.failN--
			fail = r.failCode
		}
		r.mu.Unlock()
		if fail != 0 {
			http.Error(w, "injected failure", fail)
			return
		}
		if r.user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != r.user || p != r.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// Close stops the registry (to test an unreachable one).
func (r *Registry) Close() { r.srv.Close() }

// FailNext makes the next n requests fail with HTTP status code.
func (r *Registry) FailNext(n, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failN, r.failCode = n, code
}

// Requests returns how many requests the registry has served.
func (r *Registry) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Count returns how many requests for "METHOD /path" it has served.
func (r *Registry) Count(methodPath string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paths[methodPath]
}

// Push stores img as Host/repoTag and returns that reference.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(r.auth())); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	return ref.String()
}

// PushIndex stores an image index as Host/repoTag and returns the reference.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithAuth(r.auth())); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	return ref.String()
}

func (r *Registry) auth() authn.Authenticator {
	if r.user == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.user, Password: r.pass}
}

// DockerConfig returns a .dockerconfigjson for host with user:password.
func DockerConfig(host, user, password string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	b, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	if err != nil {
		panic(fmt.Sprintf("docker config: %v", err))
	}
	return b
}

const goarch = runtime.GOARCH

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
