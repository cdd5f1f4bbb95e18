package messaging_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// More agents than nats-server's default of 1,000 consumers per stream can
// each watch their assignments.
func TestAssignmentsTakeMoreThanAThousandWatchers(t *testing.T) {
	env := natstest.Start(t, "consumers")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream := messaging.KVStream(messaging.BucketAssignments)
	s, err := env.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxConsumers; got != messaging.StreamMaxConsumers {
		t.Fatalf("%s max consumers %d, want %d", stream, got, messaging.StreamMaxConsumers)
	}
	const n = 1010
	for i := range n {
		if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			FilterSubject:     "$KV." + messaging.BucketAssignments + "." + messaging.AssignmentFilter(fmt.Sprintf("node-%d", i)),
			InactiveThreshold: time.Minute,
		}); err != nil {
			t.Fatalf("consumer %d of %d: %v", i+1, n, err)
		}
	}
}
