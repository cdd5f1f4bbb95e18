package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxModuleBytes bounds a pushed module.
const MaxModuleBytes = 256 << 20

var (
	refName   = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
	refTag    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	hexDigest = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// ModuleRef is a parsed module reference: name[:tag][@sha256:hex].
type ModuleRef struct {
	Name   string
	Tag    string // "latest" when neither tag nor digest is given
	Digest string // hex, without "sha256:"
}

// String returns the canonical form.
func (r ModuleRef) String() string {
	s := r.Name
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@sha256:" + r.Digest
	}
	return s
}

// ParseModuleRef parses name[:tag][@sha256:hex].
func ParseModuleRef(s string) (ModuleRef, error) {
	var r ModuleRef
	rest := s
	if i := strings.Index(rest, "@"); i >= 0 {
		d := rest[i+1:]
		rest = rest[:i]
		if !strings.HasPrefix(d, "sha256:") || !hexDigest.MatchString(d[len("sha256:"):]) {
			return r, fmt.Errorf("module reference %q: digest must be sha256:<64 lower-case hex digits>", s)
		}
		r.Digest = d[len("sha256:"):]
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i:], "/") {
		r.Tag = rest[i+1:]
		rest = rest[:i]
		if !refTag.MatchString(r.Tag) {
			return r, fmt.Errorf("module reference %q: invalid tag %q", s, r.Tag)
		}
	}
	if !refName.MatchString(rest) {
		return r, fmt.Errorf("module reference %q: invalid name %q (lower-case letters, digits, '.', '_', '-', '/')", s, rest)
	}
	r.Name = rest
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

func (c *Client) modules(ctx context.Context) (jetstream.ObjectStore, error) {
	_, store, err := c.objectStore(ctx)
	return store, err
}

// objectStore returns the module store and the JetStream context it is in.
func (c *Client) objectStore(ctx context.Context) (jetstream.JetStream, jetstream.ObjectStore, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, nil, fmt.Errorf("module store: %w", err)
	}
	os, err := js.ObjectStore(ctx, messaging.StoreModules)
	if err != nil {
		return nil, nil, Errorf(CodeUnavailable, "module store %s: %v", messaging.StoreModules, err)
	}
	return js, os, nil
}

// PushModule stores a module under ref (name[:tag]) and returns its sha256 (hex).
func (c *Client) PushModule(ctx context.Context, ref string, r io.Reader) (string, error) {
	mr, err := ParseModuleRef(ref)
	if err != nil {
		return "", Errorf(CodeInvalid, "%v", err)
	}
	if mr.Digest != "" {
		return "", Errorf(CodeInvalid, "push %s: give a name and optional tag, not a digest", ref)
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxModuleBytes+1))
	if err != nil {
		return "", fmt.Errorf("push %s: read: %w", ref, err)
	}
	if len(data) > MaxModuleBytes {
		return "", Errorf(CodeInvalid, "push %s: module larger than %d bytes", ref, MaxModuleBytes)
	}
	if len(data) < 8 || !bytes.Equal(data[:4], []byte("\x00asm")) {
		return "", Errorf(CodeInvalid, "push %s: not a WebAssembly binary (missing \\0asm magic)", ref)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	store, err := c.modules(ctx)
	if err != nil {
		return "", err
	}
	if _, err := store.GetInfo(ctx, messaging.ModuleDigestName(digest)); errors.Is(err, jetstream.ErrObjectNotFound) {
		if _, err := store.PutBytes(ctx, messaging.ModuleDigestName(digest), data); err != nil {
			return "", fmt.Errorf("push %s: store module: %w", ref, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	if _, err := store.PutString(ctx, messaging.ModuleObjectName(mr.Name+":"+mr.Tag), "sha256:"+digest); err != nil {
		return "", fmt.Errorf("push %s: store reference: %w", ref, err)
	}
	return digest, nil
}

// ResolveModule returns the sha256 (hex) a reference points at.
func (c *Client) ResolveModule(ctx context.Context, ref string) (string, error) {
	mr, err := ParseModuleRef(ref)
	if err != nil {
		return "", Errorf(CodeInvalid, "%v", err)
	}
	if mr.Digest != "" {
		return mr.Digest, nil
	}
	store, err := c.modules(ctx)
	if err != nil {
		return "", err
	}
	s, err := store.GetString(ctx, messaging.ModuleObjectName(mr.Name+":"+mr.Tag))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", Errorf(CodeNotFound, "module %q not found in the control plane's module store (push it with: edgectl push FILE --name %s)", mr.Name+":"+mr.Tag, mr.Name+":"+mr.Tag)
	}
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	return strings.TrimPrefix(s, "sha256:"), nil
}

// FetchModule streams the module with the given sha256 (hex) to w and
// verifies its digest. On a mismatch it returns an error; w may then hold
// partial data, so write to a temporary file and rename on success.
func (c *Client) FetchModule(ctx context.Context, digest string, w io.Writer) error {
	if !hexDigest.MatchString(digest) {
		return Errorf(CodeInvalid, "fetch module: %q is not a sha256 hex digest", digest)
	}
	return c.fetchVerified(ctx, "module", digest, w)
}

// fetchVerified streams the object sha256/<hexd> of the store to w,
// checking its digest; what names the object in errors.
func (c *Client) fetchVerified(ctx context.Context, what, hexd string, w io.Writer) error {
	r, err := c.openObject(ctx, what, hexd, 0, "")
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), r); err != nil {
		return fmt.Errorf("fetch %s sha256:%s: %w", what, hexd, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexd {
		return fmt.Errorf("fetch %s sha256:%s: digest mismatch (got sha256:%s)", what, hexd, got)
	}
	return nil
}
