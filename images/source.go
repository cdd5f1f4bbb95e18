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
func StoreSource(s ObjectStore, notFound func(error) bool) Source {
	return storeSource{s: s, notFound: notFound}
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
