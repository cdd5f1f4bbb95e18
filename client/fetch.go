package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// Resumable reads from the object store.
//
// A JetStream object store keeps an object as chunk messages on one subject
// (messaging.ObjectChunkSubject) of the bucket's stream. An ObjectReader
// reads them with an ordered consumer filtered on that subject, a few chunks
// in flight at a time. Its Token names the last chunk whose bytes it has
// returned ("<nuid>:<stream seq>:<end offset>"); a later OpenBlobAt or
// OpenModuleAt at an offset at or past that end starts the consumer at the
// next sequence, so what was received is not sent again.

// fetchWindow is about how many bytes are requested ahead of the reader
// (in whole chunks, at least minWindowChunks): enough to fill a slow,
// distant link, little to lose when it is cut.
const (
	fetchWindow     = 1 << 20
	minWindowChunks = 4
	maxWindowChunks = 64
)

// windowChunks is how many chunks of an object to request at a time.
func windowChunks(info *jetstream.ObjectInfo) int {
	if info.Chunks == 0 || info.Size == 0 {
		return minWindowChunks
	}
	chunk := max(info.Size/uint64(info.Chunks), 1)
	return int(min(max(fetchWindow/chunk, minWindowChunks), maxWindowChunks))
}

// OpenBlobAt opens the blob with digest ("sha256:<hex>" or hex) to read its
// bytes from offset. token is what Token returned on an earlier reader of
// the same blob once it had returned offset bytes or fewer ("" for none).
// It returns the reader and where its first byte lies: offset when the
// store can continue there, 0 when it starts over (no or stale token, the
// object was replaced). The reader does not verify the digest: the caller
// hashes the whole blob.
func (c *Client) OpenBlobAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error) {
	hexd := strings.TrimPrefix(digest, "sha256:")
	if !hexDigest.MatchString(hexd) {
		return nil, 0, Errorf(CodeInvalid, "fetch blob: %q is not a sha256 digest", digest)
	}
	r, err := c.openObject(ctx, "blob", hexd, offset, token)
	if err != nil {
		return nil, 0, err
	}
	return r, r.start, nil
}

// OpenModuleAt is OpenBlobAt for the module with the given sha256 (hex).
func (c *Client) OpenModuleAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error) {
	if !hexDigest.MatchString(digest) {
		return nil, 0, Errorf(CodeInvalid, "fetch module: %q is not a sha256 hex digest", digest)
	}
	r, err := c.openObject(ctx, "module", digest, offset, token)
	if err != nil {
		return nil, 0, err
	}
	return r, r.start, nil
}

// ObjectReader streams an object of the module store from an offset.
type ObjectReader struct {
	ctx  context.Context
	what string // "blob sha256:<hex>", for errors
	it   jetstream.MessagesContext
	nuid string
	size int64

	start int64  // offset of the first byte returned
	skip  int64  // bytes still to drop from the next chunks
	wire  int64  // offset just past the last chunk received
	buf   []byte // the rest of the current chunk
	seq   uint64 // stream sequence of the current chunk

	doneSeq uint64 // last chunk whose bytes were all returned
	doneEnd int64  // and the offset just past it

	received int64
	err      error
}

// Size is the object's size in bytes.
func (r *ObjectReader) Size() int64 { return r.size }

// Received is how many chunk bytes came over the connection so far.
func (r *ObjectReader) Received() int64 { return r.received }

// Token names the position after the last whole chunk returned, for a later
// open at an offset at or past it ("" when no chunk was returned whole).
func (r *ObjectReader) Token() string {
	if r.doneSeq == 0 {
		return ""
	}
	return r.nuid + ":" + strconv.FormatUint(r.doneSeq, 10) + ":" + strconv.FormatInt(r.doneEnd, 10)
}

// parseToken splits a token; ok is false for a malformed one.
func parseToken(tok string) (nuid string, seq uint64, end int64, ok bool) {
	parts := strings.Split(tok, ":")
	if len(parts) != 3 || parts[0] == "" {
		return "", 0, 0, false
	}
	seq, err1 := strconv.ParseUint(parts[1], 10, 64)
	end, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || seq == 0 || end <= 0 {
		return "", 0, 0, false
	}
	return parts[0], seq, end, true
}

// openObject opens the object sha256/<hexd> at offset (or at 0, see
// OpenBlobAt); what names it in errors.
func (c *Client) openObject(ctx context.Context, what, hexd string, offset int64, token string) (*ObjectReader, error) {
	js, store, err := c.objectStore(ctx)
	if err != nil {
		return nil, err
	}
	info, err := store.GetInfo(ctx, messaging.ModuleDigestName(hexd))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, Errorf(CodeNotFound, "%s sha256:%s not found in the control plane's store", what, hexd)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch %s sha256:%s: %w", what, hexd, err)
	}
	if info.NUID == "" || (info.Opts != nil && info.Opts.Link != nil) {
		return nil, fmt.Errorf("fetch %s sha256:%s: the stored object is a link or has no chunks", what, hexd)
	}
	r := &ObjectReader{ctx: ctx, what: what + " sha256:" + hexd, nuid: info.NUID, size: int64(info.Size)}
	var startSeq uint64
	if nuid, seq, end, ok := parseToken(token); ok && offset > 0 && nuid == info.NUID && end <= offset && offset <= r.size {
		startSeq = seq + 1
		r.start, r.skip, r.wire = offset, offset-end, end
		r.doneSeq, r.doneEnd = seq, end
	}
	if r.start == r.size {
		r.wire, r.skip = r.size, 0
		return r, nil // nothing left to read
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{messaging.ObjectChunkSubject(messaging.StoreModules, info.NUID)},
		InactiveThreshold: time.Minute,
	}
	if startSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, startSeq
	}
	cons, err := js.OrderedConsumer(ctx, messaging.ObjectStream(messaging.StoreModules), cfg)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: consumer: %w", r.what, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(windowChunks(info)))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", r.what, err)
	}
	r.it = it
	return r, nil
}

// Read returns the object's bytes in order.
func (r *ObjectReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.wire >= r.size && r.skip == 0 {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	if len(r.buf) == 0 {
		r.doneSeq, r.doneEnd = r.seq, r.wire
	}
	return n, nil
}

// next receives the next chunk into buf.
func (r *ObjectReader) next() error {
	msg, err := r.it.Next(jetstream.NextContext(r.ctx))
	if err != nil {
		return fmt.Errorf("fetch %s at byte %d of %d: %w", r.what, r.wire, r.size, err)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("fetch %s: chunk metadata: %w", r.what, err)
	}
	data := msg.Data()
	r.received += int64(len(data))
	r.wire += int64(len(data))
	r.seq = meta.Sequence.Stream
	if r.wire > r.size {
		return fmt.Errorf("fetch %s: chunks hold more than the object's %d bytes", r.what, r.size)
	}
	if meta.NumPending == 0 && r.wire < r.size {
		return fmt.Errorf("fetch %s: chunks end at byte %d of %d (stale resume token?)", r.what, r.wire, r.size)
	}
	if r.skip > 0 {
		k := min(r.skip, int64(len(data)))
		data, r.skip = data[k:], r.skip-k
	}
	r.buf = data
	if len(data) == 0 {
		r.doneSeq, r.doneEnd = r.seq, r.wire
	}
	return nil
}

// Close stops the consumer.
func (r *ObjectReader) Close() error {
	if r.it != nil {
		r.it.Stop()
	}
	return nil
}
