package images

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ResumeFunc is told that the fetch of blob digest ("sha256:<hex>") of size
// bytes (-1 when unknown) continued a partial download at offset.
type ResumeFunc func(digest string, offset, size int64)

// partials are the store's partial downloads: <dir>/partial/<hex> and
// <dir>/partial/<hex>.json.
func (s *Store) partials() *Partials { return &Partials{dir: filepath.Join(s.dir, "partial")} }

// ensureBlobAt is ensureBlob for a source that can continue a download:
// what a failed fetch received stays in the partial downloads, and the next
// call for the digest (in this process or after a restart) continues it.
func (s *Store) ensureBlobAt(ctx context.Context, hexd string, size int64, open OpenAt, onResume ResumeFunc) error {
	if s.haveBlob(hexd) {
		return nil
	}
	_, err, _ := s.blobs.Do(hexd, func() (any, error) {
		if s.haveBlob(hexd) {
			return nil, nil
		}
		stats, err := s.partials().Fetch(ctx, hexd, size, open, s.blobPath(hexd))
		if stats.Resumed && onResume != nil {
			onResume("sha256:"+hexd, stats.Offset, stats.Size)
		}
		return nil, err
	})
	return err
}

// sourceOpenAt opens blob hexd of src at an offset.
func sourceOpenAt(src ResumableSource, hexd string) OpenAt {
	return func(ctx context.Context, offset int64, token string) (io.ReadCloser, int64, error) {
		return src.OpenBlobAt(ctx, "sha256:"+hexd, offset, token)
	}
}

// registryOpenAt opens blob d (of size bytes) of repo in its registry at an
// offset, with an HTTP Range request when the offset is not 0. A registry
// that ignores the range (200) starts over at 0; other statuses are errors
// (transport.Error, see classify).
func registryOpenAt(repo name.Repository, auth authn.Authenticator, d v1.Hash, size int64) OpenAt {
	return func(ctx context.Context, offset int64, _ string) (io.ReadCloser, int64, error) {
		rt, err := transport.NewWithContext(ctx, repo.Registry, auth, remote.DefaultTransport, []string{repo.Scope(transport.PullScope)})
		if err != nil {
			return nil, 0, err
		}
		u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), d)}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, 0, err
		}
		req.Header.Set("User-Agent", "edgeorch-agent")
		ranged := offset > 0 && size > 0 && offset < size
		if ranged {
			// Both ends: some registries (go-containerregistry's) only
			// understand "bytes=a-b".
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, size-1))
		}
		resp, err := (&http.Client{Transport: rt}).Do(req)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case resp.StatusCode == http.StatusOK:
			return resp.Body, 0, nil
		case resp.StatusCode == http.StatusPartialContent && ranged:
			if cr := resp.Header.Get("Content-Range"); cr != "" && !strings.HasPrefix(cr, fmt.Sprintf("bytes %d-", offset)) {
				resp.Body.Close()
				return nil, 0, fmt.Errorf("blob %s: asked for bytes from %d, the registry sent %q", d, offset, cr)
			}
			return resp.Body, offset, nil
		}
		defer resp.Body.Close()
		if err := transport.CheckError(resp, http.StatusOK); err != nil {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("blob %s: unexpected HTTP status %s", d, resp.Status)
	}
}
