package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Resumable downloads.
//
// A blob being fetched is written to <dir>/<hex>, next to a small sidecar
// <dir>/<hex>.json that records how many of its bytes are on disk (synced)
// and the source's resume token for that point. When a fetch fails, both
// stay; the next fetch of that digest (in this process or after a restart)
// rehashes the bytes on disk and asks the source to continue from their
// end. The whole blob is verified against its sha256 before it is renamed
// into place; a mismatch removes the partial download.

// OpenAt opens a blob's bytes from offset. token is what the Token method
// of an earlier reader of the same blob returned (see Tokener), or "". It
// returns the reader and where its first byte lies: offset when the source
// continues there, 0 when it starts over.
type OpenAt func(ctx context.Context, offset int64, token string) (io.ReadCloser, int64, error)

// Tokener is implemented by readers whose source needs more than an offset
// to continue (the control plane's object store): Token is an opaque token
// for the bytes read so far.
type Tokener interface{ Token() string }

// PartialMaxAge is how long GC keeps a partial download nobody resumed.
const PartialMaxAge = 24 * time.Hour

// checkpointEvery is how many bytes are written between two syncs of a
// partial download and its sidecar.
const checkpointEvery = 1 << 20

// Partials keeps the partial downloads of one directory. Fetch and GC must
// not run at the same time for one digest (the callers serialize them).
type Partials struct{ dir string }

// OpenPartials returns the partial downloads kept in dir (created if needed).
func OpenPartials(dir string) (*Partials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("partial downloads: %w", err)
	}
	return &Partials{dir: dir}, nil
}

// partialState is the sidecar of a partial download.
type partialState struct {
	Written int64     `json:"written"`
	Size    int64     `json:"size,omitempty"`
	Token   string    `json:"token,omitempty"`
	Updated time.Time `json:"updated"`
}

// FetchStats tell what one Fetch did.
type FetchStats struct {
	// Resumed: the fetch continued a partial download at Offset.
	Resumed bool
	Offset  int64
	// Transferred is how many bytes the source delivered in this fetch.
	Transferred int64
	// Size is the blob's size when known (else -1).
	Size int64
}

// sizer is implemented by readers that know the size of the whole blob.
type sizer interface{ Size() int64 }

func (p *Partials) path(hexd string) string    { return filepath.Join(p.dir, hexd) }
func (p *Partials) sidecar(hexd string) string { return filepath.Join(p.dir, hexd+".json") }

// Offset returns how many bytes of blob hexd a partial download holds.
func (p *Partials) Offset(hexd string) int64 {
	st, _ := p.readState(hexd)
	return st.Written
}

func (p *Partials) readState(hexd string) (partialState, error) {
	var st partialState
	data, err := os.ReadFile(p.sidecar(hexd))
	if err != nil {
		return partialState{}, err
	}
	if err := json.Unmarshal(data, &st); err != nil || st.Written < 0 {
		return partialState{}, fmt.Errorf("partial download sha256:%s: bad sidecar", hexd)
	}
	return st, nil
}

// writeState replaces the sidecar of hexd atomically.
func (p *Partials) writeState(hexd string, st partialState) error {
	st.Updated = time.Now().UTC()
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := p.sidecar(hexd) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("partial download sha256:%s: %w", hexd, err)
	}
	if err := os.Rename(tmp, p.sidecar(hexd)); err != nil {
		return fmt.Errorf("partial download sha256:%s: %w", hexd, err)
	}
	return nil
}

// Remove drops the partial download of hexd.
func (p *Partials) Remove(hexd string) {
	os.Remove(p.path(hexd))
	os.Remove(p.sidecar(hexd))
	os.Remove(p.sidecar(hexd) + ".tmp")
}

// Fetch completes blob hexd (a sha256 hex digest) of size bytes (-1 when
// unknown) from open, continuing the partial download of an earlier fetch
// when there is one, verifies it and renames it to dst. On an error other
// than a digest mismatch the bytes received are kept for the next Fetch.
func (p *Partials) Fetch(ctx context.Context, hexd string, size int64, open OpenAt, dst string) (stats FetchStats, err error) {
	stats.Size = size
	if !hexDigest.MatchString(hexd) {
		return stats, fmt.Errorf("fetch blob: %q is not a sha256 hex digest", hexd)
	}
	if err := ctx.Err(); err != nil {
		return stats, fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return stats, fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
	}
	f, err := os.OpenFile(p.path(hexd), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return stats, fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
	}
	defer f.Close()
	var st partialState
	defer func() {
		if err != nil && st.Written == 0 {
			f.Close()
			p.Remove(hexd) // nothing worth keeping
		}
	}()

	if saved, rerr := p.readState(hexd); rerr == nil && (size < 0 || saved.Size <= 0 || saved.Size == size) {
		st = saved
	}
	if fi, err := f.Stat(); err != nil || fi.Size() < st.Written || (size >= 0 && st.Written > size) {
		st = partialState{}
	}
	// Rehash what is on disk (a sidecar only counts synced bytes; anything
	// written after it is dropped).
	h := sha256.New()
	if st.Written > 0 {
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, st.Written)); err != nil {
			st = partialState{}
			h.Reset()
		}
	}
	restart := func() error {
		st = partialState{}
		h.Reset()
		if err := f.Truncate(0); err != nil {
			return err
		}
		_, err := f.Seek(0, io.SeekStart)
		return err
	}
	if err := f.Truncate(st.Written); err != nil {
		return stats, fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
	}
	if _, err := f.Seek(st.Written, io.SeekStart); err != nil {
		return stats, fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
	}

	if size < 0 || st.Written < size {
		rc, start, err := open(ctx, st.Written, st.Token)
		if err != nil {
			if st.Written > 0 {
				_ = p.writeState(hexd, st)
			}
			return stats, err
		}
		defer rc.Close()
		if sz, ok := rc.(sizer); ok && size < 0 && sz.Size() > 0 {
			size, stats.Size = sz.Size(), sz.Size()
		}
		switch {
		case start == st.Written:
		case start == 0:
			if err := restart(); err != nil {
				return stats, fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
			}
		default:
			return stats, fmt.Errorf("fetch blob sha256:%s: the source continued at byte %d, not %d", hexd, start, st.Written)
		}
		st.Size = size
		stats.Resumed, stats.Offset = start > 0, start
		err = p.copy(f, h, rc, hexd, &st, &stats)
		if err != nil {
			// Keep what arrived, synced, for the next fetch.
			if f.Sync() == nil {
				_ = p.writeState(hexd, st)
			}
			if errors.Is(err, errTooLong) {
				p.Remove(hexd)
			}
			return stats, err
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexd {
		f.Close()
		p.Remove(hexd)
		return stats, fmt.Errorf("blob sha256:%s: digest mismatch (got sha256:%s); partial download removed", hexd, got)
	}
	if err := f.Sync(); err != nil {
		return stats, fmt.Errorf("fetch blob sha256:%s: sync: %w", hexd, err)
	}
	if err := f.Close(); err != nil {
		return stats, fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
	}
	if err := os.Rename(p.path(hexd), dst); err != nil {
		return stats, fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
	}
	os.Remove(p.sidecar(hexd))
	return stats, nil
}

// errTooLong: the source sent more bytes than the blob has.
var errTooLong = errors.New("more bytes than the blob's size")

// copy appends rc to f, hashing, with a checkpoint every checkpointEvery
// bytes. st and stats follow what was written.
func (p *Partials) copy(f *os.File, h io.Writer, rc io.Reader, hexd string, st *partialState, stats *FetchStats) error {
	tok, _ := rc.(Tokener)
	buf := make([]byte, 64<<10)
	var since int64
	for {
		n, rerr := rc.Read(buf)
		if n > 0 {
			if st.Size >= 0 && st.Written+int64(n) > st.Size {
				return fmt.Errorf("fetch blob sha256:%s: %w (%d)", hexd, errTooLong, st.Size)
			}
			if _, err := f.Write(buf[:n]); err != nil {
				return fmt.Errorf("fetch blob sha256:%s: %w", hexd, err)
			}
			h.Write(buf[:n])
			st.Written += int64(n)
			stats.Transferred += int64(n)
			since += int64(n)
			if tok != nil {
				st.Token = tok.Token()
			}
			if since >= checkpointEvery {
				since = 0
				if err := f.Sync(); err != nil {
					return fmt.Errorf("fetch blob sha256:%s: sync: %w", hexd, err)
				}
				if err := p.writeState(hexd, *st); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			if st.Size >= 0 && st.Written < st.Size {
				return fmt.Errorf("fetch blob sha256:%s: %w after %d of %d bytes", hexd, io.ErrUnexpectedEOF, st.Written, st.Size)
			}
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("fetch blob sha256:%s at byte %d: %w", hexd, st.Written, rerr)
		}
	}
}

// GC removes the partial downloads not written to for maxAge and returns
// the bytes freed.
func (p *Partials) GC(maxAge time.Duration) (int64, error) {
	entries, err := os.ReadDir(p.dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("gc partial downloads: %w", err)
	}
	var freed int64
	var firstErr error
	for _, e := range entries {
		hexd, _, _ := strings.Cut(e.Name(), ".")
		fi, err := e.Info()
		if err != nil {
			continue
		}
		updated := fi.ModTime()
		if st, err := p.readState(hexd); err == nil && st.Updated.After(updated) {
			updated = st.Updated
		}
		if time.Since(updated) < maxAge {
			continue
		}
		if err := os.Remove(filepath.Join(p.dir, e.Name())); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("gc partial download %s: %w", e.Name(), err)
			continue
		}
		freed += fi.Size()
	}
	return freed, firstErr
}
