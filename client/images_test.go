package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/images/imagetest"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// startStore runs a real nats-server with the control plane's buckets.
func startStore(t *testing.T) (*client.Client, *messaging.Buckets) {
	t.Helper()
	nenv := natstest.Start(t, "test")
	nc, b := nenv.Conn, nenv.Buckets
	return client.New(nc), b
}

func objectCount(t *testing.T, b *messaging.Buckets) int {
	t.Helper()
	list, err := b.Modules.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

func TestPushImageThenPullThroughSource(t *testing.T) {
	ctx := context.Background()
	cl, b := startStore(t)
	img := imagetest.Image(t, v1.Config{Entrypoint: []string{"/bin/app"}},
		imagetest.Layer(t,
			imagetest.File{Name: "bin", Dir: true},
			imagetest.File{Name: "bin/app", Body: "#!/bin/sh\n", Mode: 0o755},
			imagetest.File{Name: "old", Body: "old"},
		),
		imagetest.Layer(t, imagetest.File{Name: ".wh.old"}, imagetest.File{Name: "new", Body: "new"}),
	)
	want, _ := img.Digest()
	// A "localhost/" name, so that a fallback to a registry stays on loopback.
	digest, err := cl.PushImage(ctx, "localhost/app:v1", img)
	if err != nil {
		t.Fatal(err)
	}
	if digest != want.String() {
		t.Errorf("pushed digest %s, want %s", digest, want)
	}
	if n := objectCount(t, b); n != 5 { // tag, manifest, config, 2 layers
		t.Errorf("%d objects, want 5", n)
	}
	// Same layers under another tag: only the tag is new.
	if d, err := cl.PushImage(ctx, "localhost/app:v2", img); err != nil || d != digest {
		t.Fatalf("second push: %s, %v", d, err)
	}
	if n := objectCount(t, b); n != 6 {
		t.Errorf("%d objects after a second tag, want 6", n)
	}
	if d, err := cl.ResolveImage(ctx, "localhost/app:v1"); err != nil || d != digest {
		t.Errorf("resolve: %s, %v", d, err)
	}
	if d, err := cl.ResolveImage(ctx, "localhost/app@"+digest); err != nil || d != digest {
		t.Errorf("resolve by digest: %s, %v", d, err)
	}
	for _, ref := range []string{"localhost/nope:v1", "127.0.0.1:5000/app:v1", "localhost/app@sha256:" + strings.Repeat("a", 64)} {
		if _, err := cl.ResolveImage(ctx, ref); !client.IsNotFound(err) {
			t.Errorf("resolve %s: %v, want NotFound", ref, err)
		}
	}
	if _, err := cl.PushImage(ctx, "Bad Name", img); !client.IsInvalid(err) {
		t.Errorf("push with a bad name: %v", err)
	}

	store, err := images.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	src := images.StoreSource(cl, client.IsNotFound)
	got, err := store.Pull(ctx, "localhost/app:v1", images.PullOptions{Source: src, Policy: images.PullAlways})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest {
		t.Errorf("pulled %s, want %s", got.Digest, digest)
	}
	if b, err := os.ReadFile(filepath.Join(got.Dir, "rootfs", "new")); err != nil || string(b) != "new" {
		t.Errorf("rootfs/new: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(got.Dir, "rootfs", "old")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whiteout not applied: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(got.Dir, "rootfs", "bin", "app")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/app: %v, %v", fi, err)
	}
	if cfg, err := os.ReadFile(filepath.Join(got.Dir, "config.json")); err != nil || !bytes.Contains(cfg, []byte(`"/bin/app"`)) {
		t.Errorf("config.json: %s, %v", cfg, err)
	}
	if _, err := src.Resolve(ctx, "localhost/nope:v1"); !errors.Is(err, images.ErrNotFound) {
		t.Errorf("source resolve of an absent image: %v, want images.ErrNotFound", err)
	}
}

func TestFetchBlobVerifies(t *testing.T) {
	ctx := context.Background()
	cl, b := startStore(t)
	good := []byte("layer bytes")
	img := imagetest.Image(t, v1.Config{}, imagetest.Layer(t, imagetest.File{Name: "f", Body: string(good)}))
	digest, err := cl.PushImage(ctx, "app:v1", img)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := cl.FetchBlob(ctx, digest, &buf); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	if !bytes.Equal(buf.Bytes(), raw) {
		t.Error("fetched manifest differs")
	}
	// Corrupt the manifest object in place.
	if _, err := b.Modules.PutBytes(ctx, messaging.ModuleDigestName(strings.TrimPrefix(digest, "sha256:")), []byte("tampered")); err != nil {
		t.Fatal(err)
	}
	if err := cl.FetchBlob(ctx, digest, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Errorf("tampered blob: %v", err)
	}
	if err := cl.FetchBlob(ctx, "sha256:"+strings.Repeat("b", 64), &bytes.Buffer{}); !client.IsNotFound(err) {
		t.Errorf("absent blob: %v", err)
	}
	if err := cl.FetchBlob(ctx, "nope", &bytes.Buffer{}); !client.IsInvalid(err) {
		t.Errorf("bad digest: %v", err)
	}
}
