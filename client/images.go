package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/edgeorch/edgeorch/messaging"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nats-io/nats.go/jetstream"
)

// Images live in the module store next to wasm modules: every blob
// (manifest, config, compressed layers) under messaging.ModuleDigestName(hex)
// and the tag under messaging.ModuleObjectName("name:tag"), whose content is
// the manifest digest "sha256:<hex>". A module and an image reference share
// that namespace; the content of the blob a tag points at tells them apart.

// PushImage stores img under ref (name[:tag]) and returns its manifest digest
// ("sha256:<hex>"). Blobs already in the store are not sent again.
func (c *Client) PushImage(ctx context.Context, ref string, img v1.Image) (string, error) {
	mr, err := ParseModuleRef(ref)
	if err != nil {
		return "", Errorf(CodeInvalid, "%v", err)
	}
	if mr.Digest != "" {
		return "", Errorf(CodeInvalid, "push %s: give a name and optional tag, not a digest", ref)
	}
	store, err := c.modules(ctx)
	if err != nil {
		return "", err
	}
	layers, err := img.Layers()
	if err != nil {
		return "", fmt.Errorf("push %s: layers: %w", ref, err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return "", fmt.Errorf("push %s: layer digest: %w", ref, err)
		}
		if err := putBlob(ctx, store, d, l.Compressed); err != nil {
			return "", fmt.Errorf("push %s: layer %s: %w", ref, d, err)
		}
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return "", fmt.Errorf("push %s: config: %w", ref, err)
	}
	if err := putBlobBytes(ctx, store, config); err != nil {
		return "", fmt.Errorf("push %s: config: %w", ref, err)
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return "", fmt.Errorf("push %s: manifest: %w", ref, err)
	}
	sum := sha256.Sum256(manifest)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if err := putBlobBytes(ctx, store, manifest); err != nil {
		return "", fmt.Errorf("push %s: manifest: %w", ref, err)
	}
	if _, err := store.PutString(ctx, messaging.ModuleObjectName(mr.Name+":"+mr.Tag), digest); err != nil {
		return "", fmt.Errorf("push %s: store reference: %w", ref, err)
	}
	return digest, nil
}

// putBlob stores the blob with digest d, read from open, unless the store
// has it. The content is verified against d while it is sent.
func putBlob(ctx context.Context, store jetstream.ObjectStore, d v1.Hash, open func() (io.ReadCloser, error)) error {
	if d.Algorithm != "sha256" || !hexDigest.MatchString(d.Hex) {
		return fmt.Errorf("%q is not a sha256 digest", d)
	}
	name := messaging.ModuleDigestName(d.Hex)
	if _, err := store.GetInfo(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return err
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := store.Put(ctx, jetstream.ObjectMeta{Name: name}, io.TeeReader(rc, h)); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		_ = store.Delete(ctx, name)
		return fmt.Errorf("content digest sha256:%s does not match", got)
	}
	return nil
}

func putBlobBytes(ctx context.Context, store jetstream.ObjectStore, data []byte) error {
	sum := sha256.Sum256(data)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	return putBlob(ctx, store, d, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// ResolveImage returns the manifest digest ("sha256:<hex>") ref
// (name[:tag][@sha256:hex]) points at in the control plane's store. A
// reference the store cannot hold (a registry host with a port, upper-case
// letters) or does not hold is a NotFound error.
func (c *Client) ResolveImage(ctx context.Context, ref string) (string, error) {
	mr, err := ParseModuleRef(ref)
	if err != nil {
		return "", Errorf(CodeNotFound, "image %q is not in the control plane's store: %v", ref, err)
	}
	store, err := c.modules(ctx)
	if err != nil {
		return "", err
	}
	if mr.Digest != "" {
		if _, err := store.GetInfo(ctx, messaging.ModuleDigestName(mr.Digest)); errors.Is(err, jetstream.ErrObjectNotFound) {
			return "", Errorf(CodeNotFound, "image %s not found in the control plane's store", ref)
		} else if err != nil {
			return "", fmt.Errorf("resolve %s: %w", ref, err)
		}
		return "sha256:" + mr.Digest, nil
	}
	s, err := store.GetString(ctx, messaging.ModuleObjectName(mr.Name+":"+mr.Tag))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", Errorf(CodeNotFound, "image %q not found in the control plane's store (push it with: edgectl push FILE --name %s)", mr.Name+":"+mr.Tag, mr.Name+":"+mr.Tag)
	}
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	if !strings.HasPrefix(s, "sha256:") || !hexDigest.MatchString(s[len("sha256:"):]) {
		return "", fmt.Errorf("resolve %s: stored reference holds %q, not a digest", ref, s)
	}
	return s, nil
}

// FetchBlob streams the blob with the given digest ("sha256:<hex>" or hex)
// to w and verifies it. On a mismatch it returns an error; w may then hold
// partial data.
func (c *Client) FetchBlob(ctx context.Context, digest string, w io.Writer) error {
	hexd := strings.TrimPrefix(digest, "sha256:")
	if !hexDigest.MatchString(hexd) {
		return Errorf(CodeInvalid, "fetch blob: %q is not a sha256 digest", digest)
	}
	return c.fetchVerified(ctx, "blob", hexd, w)
}
