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
	// Nats-Msg-Id are stored once (several control planes publish).
	EventsDuplicates = 2 * time.Minute
)

// EventsStreamConfig is the configuration of StreamEvents.
func EventsStreamConfig(opts BucketOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "edge events and status changes (docs/integrations.md)",
		Subjects:    []string{EventsFilter, StatusFilter},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      EventsMaxAge,
		MaxBytes:    EventsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Storage:     opts.storage(),
		Replicas:    opts.replicas(),
		Duplicates:  EventsDuplicates,
	}
}

// EnsureEventsStream creates StreamEvents, or brings an existing one to
// EventsStreamConfig.
func EnsureEventsStream(ctx context.Context, js jetstream.JetStream, opts BucketOptions) (jetstream.Stream, error) {
	cfg := EventsStreamConfig(opts)
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.UpdateStream(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamEvents, err)
	}
	return s, nil
}
