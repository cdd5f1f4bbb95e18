package images

import (
	"context"
	"fmt"
	"io"
)

// ObjectStore is the image part of the control plane client
// (*client.Client): tags and blobs pushed with edgectl push.
type ObjectStore interface {
	ResolveImage(ctx context.Context, ref string) (string, error)
	FetchBlob(ctx context.Context, digest string, w io.Writer) error
}

// StoreSource makes an ObjectStore a Source; notFound tells the store's
// not-found errors (client.IsNotFound), which Resolve turns into ErrNotFound.
// When s is also a BlobOpener, the Source is a ResumableSource.
func StoreSource(s ObjectStore, notFound func(error) bool) Source {
	src := storeSource{s: s, notFound: notFound}
	if o, ok := s.(BlobOpener); ok {
		return resumableStoreSource{storeSource: src, o: o}
	}
	return src
}

type storeSource struct {
	s        ObjectStore
	notFound func(error) bool
}

func (s storeSource) Resolve(ctx context.Context, ref string) (string, error) {
	d, err := s.s.ResolveImage(ctx, ref)
	if err != nil && s.notFound(err) {
		return "", fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return d, err
}

func (s storeSource) Fetch(ctx context.Context, digest string, w io.Writer) error {
	return s.s.FetchBlob(ctx, digest, w)
}

// ResumableSource is a Source that can continue a blob where an earlier
// fetch stopped. OpenBlobAt returns the blob's bytes from offset and where
// they start: offset, or 0 when the source starts over; token is what the
// reader of an earlier call returned from a Token method (see Tokener).
type ResumableSource interface {
	Source
	OpenBlobAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error)
}

// BlobOpener is the resumable part of an ObjectStore (*client.Client).
type BlobOpener interface {
	OpenBlobAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error)
}

type resumableStoreSource struct {
	storeSource
	o BlobOpener
}

func (s resumableStoreSource) OpenBlobAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error) {
	return s.o.OpenBlobAt(ctx, digest, offset, token)
}
