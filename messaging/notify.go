package messaging

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// AssignmentsRePublish is the republish rule of the assignments bucket's
// stream: once stored, every put, delete and purge of an assignment key is
// also published as a core NATS message on AssignmentNotifySubject(key),
// value included. The server adds the headers Nats-Stream, Nats-Subject,
// Nats-Sequence (the key's new revision) and Nats-Last-Sequence, and keeps
// the message's own (KV-Operation: DEL or PURGE for deletes and purges).
// Agents follow their node's changes with one core subscription instead of
// one JetStream consumer each (docs/scale.md).
func AssignmentsRePublish() *jetstream.RePublish {
	return &jetstream.RePublish{
		Source:      KVSubject(BucketAssignments, ">"),
		Destination: assignNotifyPrefix + ".>",
	}
}

// Headers of a republished message (set by the server).
const (
	// HeaderSequence is the stream sequence, i.e. the KV revision.
	HeaderSequence = "Nats-Sequence"
	// HeaderKVOperation is DEL or PURGE on a delete or purge; absent on a put.
	HeaderKVOperation = "KV-Operation"
)

// ensureRePublish sets the republish rule rp on stream when it does not
// have it yet (a bucket created before the rule existed is updated in
// place). It reports whether it changed the stream.
func ensureRePublish(ctx context.Context, js jetstream.JetStream, stream string, rp *jetstream.RePublish, opts BucketOptions) (bool, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", stream, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.RePublish != nil && *cfg.RePublish == *rp {
		return false, nil
	}
	cfg.RePublish = rp
	if err := opts.retryPlacement(ctx, func() error { _, err := js.UpdateStream(ctx, cfg); return err }); err != nil {
		return false, fmt.Errorf("update stream %s: republish %s to %s: %w", stream, rp.Source, rp.Destination, err)
	}
	return true, nil
}
