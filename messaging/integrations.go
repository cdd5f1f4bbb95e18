package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Limits of StreamEvents.
const (
	EventsMaxAge   = 7 * 24 * time.Hour
	EventsMaxBytes = 256 << 20
	// EventsDuplicates is the window in which messages with the same
	// Nats-Msg-Id are stored (and republished) once: every control plane
	// publishes every change.
	EventsDuplicates = 2 * time.Minute
)

// EventsStreamConfig is the configuration of StreamEvents. The stream
// captures the ingest tree (IngestSubject), where every control plane
// publishes; it stores each message under its public subject (a subject
// transform from IngestFilter to IntegrationsFilter), drops the copies
// with a Nats-Msg-Id seen within EventsDuplicates, and republishes what it
// stored on the public subject. So plain subscribers of the public tree
// and consumers of the stream both see one copy, under the public subject.
// A republished message carries the headers Nats-Stream, Nats-Subject,
// Nats-Sequence, Nats-Time-Stamp and Nats-Last-Sequence besides
// Nats-Msg-Id.
func EventsStreamConfig(opts BucketOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "edge events and status changes (docs/integrations.md)",
		Subjects:    []string{eventsIngestFilter, statusIngestFilter},
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      IngestFilter,
			Destination: IntegrationsFilter,
		},
		RePublish: &jetstream.RePublish{
			Source:      IntegrationsFilter,
			Destination: IntegrationsFilter,
		},
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     EventsMaxAge,
		MaxBytes:   EventsMaxBytes,
		Discard:    jetstream.DiscardOld,
		Storage:    opts.storage(),
		Replicas:   opts.replicas(),
		Duplicates: EventsDuplicates,
	}
}

// EnsureEventsStream creates StreamEvents, or brings an existing one
// (also one made by an older version, which captured the public subjects)
// to EventsStreamConfig in place, keeping its messages and consumers. Like
// OpenBuckets, it scales an existing stream up to opts.Replicas, never down.
func EnsureEventsStream(ctx context.Context, js jetstream.JetStream, opts BucketOptions) (jetstream.Stream, error) {
	if err := opts.Check(); err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamEvents, err)
	}
	cfg := EventsStreamConfig(opts)
	var s jetstream.Stream
	err := opts.retryPlacement(ctx, func() (err error) {
		s, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			if old, ierr := js.Stream(ctx, StreamEvents); ierr == nil && old.CachedInfo().Config.Replicas > cfg.Replicas {
				cfg.Replicas = old.CachedInfo().Config.Replicas
			}
			s, err = js.UpdateStream(ctx, cfg)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamEvents, replicasError(err, StreamEvents, cfg.Replicas))
	}
	return s, nil
}
