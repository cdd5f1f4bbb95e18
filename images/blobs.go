package images

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

var hexDigest = regexp.MustCompile(`^[a-f0-9]{64}$`)

// digestHex returns the hex part of "sha256:<hex>" (or of a bare hex digest).
func digestHex(d string) (string, error) {
	h := strings.TrimPrefix(d, "sha256:")
	if !hexDigest.MatchString(h) {
		return "", fmt.Errorf("%q is not a sha256 digest", d)
	}
	return h, nil
}

// haveBlob reports whether the blob is in the cache.
func (s *Store) haveBlob(hex string) bool {
	_, err := os.Stat(s.blobPath(hex))
	return err == nil
}

// blobSize returns the size of a cached blob.
func (s *Store) blobSize(hex string) (int64, error) {
	fi, err := os.Stat(s.blobPath(hex))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// ensureBlob puts the blob with digest hex in the cache unless it is there,
// writing it with fetch into a temporary file, verifying its digest and
// renaming it into place. Concurrent calls for one digest share one fetch.
func (s *Store) ensureBlob(hexd string, fetch func(w io.Writer) error) error {
	if s.haveBlob(hexd) {
		return nil
	}
	_, err, _ := s.blobs.Do(hexd, func() (any, error) {
		if s.haveBlob(hexd) {
			return nil, nil
		}
		return nil, s.writeBlob(hexd, fetch)
	})
	return err
}

func (s *Store) writeBlob(hexd string, fetch func(w io.Writer) error) error {
	tmp, err := os.CreateTemp(s.tmpDir(), "blob-*")
	if err != nil {
		return fmt.Errorf("cache blob sha256:%s: %w", hexd, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if err := fetch(io.MultiWriter(tmp, h)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cache blob sha256:%s: %w", hexd, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexd {
		return fmt.Errorf("blob sha256:%s: digest mismatch (got sha256:%s)", hexd, got)
	}
	if err := os.Rename(tmp.Name(), s.blobPath(hexd)); err != nil {
		return fmt.Errorf("cache blob sha256:%s: %w", hexd, err)
	}
	return nil
}

// putBlobBytes caches data as a blob and returns its hex digest.
func (s *Store) putBlobBytes(data []byte) (string, error) {
	sum := sha256.Sum256(data)
	hexd := hex.EncodeToString(sum[:])
	err := s.ensureBlob(hexd, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	return hexd, err
}

// readBlob returns a cached blob's content.
func (s *Store) readBlob(hexd string) ([]byte, error) {
	data, err := os.ReadFile(s.blobPath(hexd))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob sha256:%s is not in the cache", hexd)
	}
	return data, err
}
