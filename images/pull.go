package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// pullTries is how often one Pull tries a registry on transient errors.
const pullTries = 3

// Pull makes the image ref present (per opts.Policy) and returns it.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (Image, error) {
	r, err := parseRef(ref, opts.Insecure)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: invalid image reference: %w", ref, err)
	}
	key := r.Name() // the index records tags, not digests
	if _, ok := r.(name.Digest); ok {
		key = ""
	}
	policy, err := effectivePolicy(opts.Policy, r)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if policy != PullAlways {
		if img, ok := s.present(ref, key, r); ok {
			return img, nil
		}
		if policy == PullNever {
			return Image{}, fmt.Errorf("image %s not present with pull policy Never: %w", ref, ErrNotFound)
		}
	}

	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	var srcErr error
	if opts.Source != nil {
		img, err := s.pullSource(ctx, opts.Source, ref, key, opts.OnResume)
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil {
			return Image{}, fmt.Errorf("pull %s: %w", ref, ctx.Err())
		}
		if !errors.Is(err, ErrNotFound) {
			srcErr = err
		}
	}
	img, err := s.pullRegistry(ctx, r, ref, key, opts)
	if err != nil && srcErr != nil {
		return Image{}, fmt.Errorf("%w (control plane object store: %v)", err, srcErr)
	}
	return img, err
}

// parseRef parses ref, allowing plain HTTP when asked and for loopback
// registries.
func parseRef(ref string, insecure bool) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	host := r.Context().RegistryStr()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if insecure || host == "localhost" || host == "127.0.0.1" || host == "::1" {
		return name.ParseReference(ref, name.Insecure)
	}
	return r, nil
}

// present returns the image ref names when it is unpacked here.
func (s *Store) present(ref, key string, r name.Reference) (Image, bool) {
	if d, ok := r.(name.Digest); ok {
		s.mu.Lock()
		img, ok := s.imageLocked(ref, d.DigestStr())
		s.mu.Unlock()
		if ok {
			s.touch("", img)
		}
		return img, ok
	}
	img, ok := s.lookup(key, ref)
	if ok {
		s.touch(key, img)
	}
	return img, ok
}

// touch records that img was used (best effort: the index is rewritten).
func (s *Store) touch(key string, img Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.idx.Images[strings.TrimPrefix(img.Digest, "sha256:")]; ok {
		m.LastUsed = time.Now().UTC()
		if key != "" {
			s.idx.Refs[key] = img.Digest
		}
		_ = s.saveLocked()
	}
}

// finish unpacks the cached image hex and records key → hex.
func (s *Store) finish(ctx context.Context, ref, key, hexd string) (Image, error) {
	meta, err := s.unpack(ctx, hexd)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := s.record(key, hexd, meta); err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	return Image{Ref: ref, Digest: "sha256:" + hexd, Dir: s.unpackedPath(hexd), Size: meta.Size}, nil
}

// unpacked reports whether image hex is already unpacked and indexed.
func (s *Store) unpacked(hexd string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.imageLocked("", "sha256:"+hexd)
	return ok
}

// pullSource pulls ref from the control plane's object store. The error
// matches ErrNotFound when the source does not hold ref.
func (s *Store) pullSource(ctx context.Context, src Source, ref, key string, onResume ResumeFunc) (Image, error) {
	d, err := src.Resolve(ctx, ref)
	if err != nil {
		return Image{}, err
	}
	hexd, err := digestHex(d)
	if err != nil {
		return Image{}, fmt.Errorf("resolve %s: %w", ref, err)
	}
	fetch := func(h string, size int64) error {
		if rs, ok := src.(ResumableSource); ok {
			return s.ensureBlobAt(ctx, h, size, sourceOpenAt(rs, h), onResume)
		}
		return s.ensureBlob(h, func(w io.Writer) error { return src.Fetch(ctx, "sha256:"+h, w) })
	}
	if err := fetch(hexd, -1); err != nil {
		return Image{}, fmt.Errorf("fetch manifest of %s: %w", ref, err)
	}
	raw, err := s.readBlob(hexd)
	if err != nil {
		return Image{}, err
	}
	idx, err := isIndex(raw)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", ref, err)
	}
	if idx {
		if hexd, err = pickPlatform(raw); err != nil {
			return Image{}, fmt.Errorf("%s: %w", ref, err)
		}
		if err := fetch(hexd, -1); err != nil {
			return Image{}, fmt.Errorf("fetch manifest of %s: %w", ref, err)
		}
		if raw, err = s.readBlob(hexd); err != nil {
			return Image{}, err
		}
	}
	if s.unpacked(hexd) {
		return s.finish(ctx, ref, key, hexd)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", ref, err)
	}
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(3)
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		g.Go(func() error {
			size := d.Size
			if size <= 0 {
				size = -1 // not given: the digest still checks the content
			}
			if err := fetch(d.Digest.Hex, size); err != nil {
				return fmt.Errorf("fetch %s of %s: %w", d.Digest, ref, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Image{}, err
	}
	return s.finish(ctx, ref, key, hexd)
}

// pullRegistry pulls ref from its registry, trying again on transient errors.
func (s *Store) pullRegistry(ctx context.Context, r name.Reference, ref, key string, opts PullOptions) (Image, error) {
	auth, err := authFor(r.Context().RegistryStr(), opts.DockerConfigs)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	delay := s.retryDelay
	for try := 1; ; try++ {
		img, err := s.pullRegistryOnce(ctx, r, ref, key, auth, opts.OnResume)
		if err == nil {
			return img, nil
		}
		kind := classify(err)
		if kind != ErrUnreachable || try == pullTries || ctx.Err() != nil {
			if ctx.Err() != nil {
				return Image{}, fmt.Errorf("pull %s: %w", ref, err)
			}
			if kind != nil {
				return Image{}, fmt.Errorf("pull %s: %w: %v", ref, kind, err)
			}
			return Image{}, fmt.Errorf("pull %s: %w", ref, err)
		}
		select {
		case <-ctx.Done():
			return Image{}, fmt.Errorf("pull %s: %w: %v", ref, kind, err)
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func (s *Store) pullRegistryOnce(ctx context.Context, r name.Reference, ref, key string, auth authn.Authenticator, onResume ResumeFunc) (Image, error) {
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithRetryBackoff(remote.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 1}),
		remote.WithUserAgent("edgeorch-agent"),
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return Image{}, err
	}
	if !desc.MediaType.IsIndex() && !desc.MediaType.IsImage() {
		return Image{}, fmt.Errorf("%w: %s is a %s, not a container image", ErrNotFound, ref, desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return Image{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return Image{}, err
	}
	hexd := d.Hex
	if s.unpacked(hexd) {
		return s.finish(ctx, ref, key, hexd)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return Image{}, err
	}
	if got, err := s.putBlobBytes(raw); err != nil {
		return Image{}, err
	} else if got != hexd {
		return Image{}, fmt.Errorf("manifest digest mismatch: want sha256:%s, got sha256:%s", hexd, got)
	}
	if _, err := parseManifest(raw); err != nil {
		return Image{}, err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return Image{}, err
	}
	if _, err := s.putBlobBytes(config); err != nil {
		return Image{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, err
	}
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(3)
	for _, l := range layers {
		g.Go(func() error {
			ld, err := l.Digest()
			if err != nil {
				return err
			}
			size, err := l.Size()
			if err != nil || size <= 0 {
				size = -1
			}
			if ld.Algorithm != "sha256" || !hexDigest.MatchString(ld.Hex) {
				return fmt.Errorf("layer %q is not a sha256 digest", ld)
			}
			return s.ensureBlobAt(ctx, ld.Hex, size, registryOpenAt(r.Context(), auth, ld, size), onResume)
		})
	}
	if err := g.Wait(); err != nil {
		return Image{}, err
	}
	return s.finish(ctx, ref, key, hexd)
}

// classify maps a registry error to ErrNotFound, ErrUnauthorized or
// ErrUnreachable (transient: worth another try), or nil.
func classify(err error) error {
	for _, k := range []error{ErrNotFound, ErrUnauthorized, ErrUnreachable} {
		if errors.Is(err, k) {
			return k
		}
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return ErrNotFound
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return ErrUnauthorized
			case transport.TooManyRequestsErrorCode, transport.UnavailableErrorCode:
				return ErrUnreachable
			}
		}
		switch {
		case te.StatusCode == http.StatusNotFound:
			return ErrNotFound
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return ErrUnauthorized
		case te.StatusCode == http.StatusTooManyRequests || te.StatusCode == http.StatusRequestTimeout || te.StatusCode >= 500:
			return ErrUnreachable
		}
		return nil
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &opErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, io.ErrUnexpectedEOF):
		return ErrUnreachable
	case errors.As(err, &netErr) && netErr.Timeout():
		return ErrUnreachable
	}
	return nil
}

// effectivePolicy is the pull policy to apply to r: the given one, or, when
// empty, Always for the tag latest and IfNotPresent otherwise (Kubernetes).
func effectivePolicy(p PullPolicy, r name.Reference) (PullPolicy, error) {
	switch p {
	case PullAlways, PullIfNotPresent, PullNever:
		return p, nil
	case "":
		if t, ok := r.(name.Tag); ok && t.TagStr() == "latest" {
			return PullAlways, nil
		}
		return PullIfNotPresent, nil
	}
	return "", fmt.Errorf("unknown pull policy %q (Always, IfNotPresent or Never)", p)
}
