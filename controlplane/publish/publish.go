// Package publish publishes Events and the status changes of pods and
// nodes on the integration subjects (messaging.EventSubject,
// PodStatusSubject, NodeStatusSubject). See docs/integrations.md.
//
// One watcher of the object store feeds it. A status message goes out only
// when the summary (phase, conditions, containers; a node's state)
// changed. The objects present when the first watch starts are the
// baseline and are not published; a later re-watch publishes what changed
// meanwhile. Each message carries Nats-Msg-Id kind/uid/resourceVersion,
// the same in every control plane for the same change.
//
// Every control plane runs a Publisher, so each change is published once
// per control plane. The messages go to the ingest subjects
// (messaging.IngestSubject) with a JetStream acknowledgement; the
// EDGE_EVENTS stream keeps the first copy of each Nats-Msg-Id under its
// public subject and republishes it there, so plain subscribers and
// stream consumers see it once. A message the stream did not acknowledge
// (timeout, stream unavailable) is sent again, with the same id, for up to
// Options.RetryFor.
package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Watcher is the part of the store the publisher reads.
type Watcher interface {
	WatchAll(ctx context.Context) (<-chan store.Event, error)
}

// Defaults of Options.
const (
	DefaultAckTimeout = 5 * time.Second
	// DefaultRetryFor is half the stream's duplicate window: a message
	// sent again later than the window could be stored twice.
	DefaultRetryFor = messaging.EventsDuplicates / 2
)

// Options tune the publisher.
type Options struct {
	// Logger receives publish errors; discarded if nil.
	Logger *slog.Logger
	// Now is the clock of the Time fields (time.Now).
	Now func() time.Time
	// Retry is the pause before a failed watch is restarted (1s).
	Retry time.Duration
	// OnSynced, if set, is called each time a watch has delivered the
	// objects present when it started.
	OnSynced func()
	// AckTimeout is how long the stream's acknowledgement of a message
	// is awaited before the message is sent again (DefaultAckTimeout).
	AckTimeout time.Duration
	// RetryFor is how long, from its first sending, a message the stream
	// did not acknowledge is sent again (DefaultRetryFor). It is capped at
	// DefaultRetryFor, so that a late copy is still recognised as a
	// duplicate.
	RetryFor time.Duration
}

// Stats counts what a publisher sent.
type Stats struct {
	// Published messages (each counted once, however often sent).
	Published uint64
	// Acked messages: the stream acknowledged them.
	Acked uint64
	// Duplicates among Acked: the stream already had a copy (from another
	// control plane, or from an earlier sending of this one).
	Duplicates uint64
	// Retries: sendings after the first.
	Retries uint64
	// Dropped messages: never acknowledged within RetryFor, or not sent.
	Dropped uint64
}

// Pending is the number of messages neither acknowledged nor dropped.
func (s Stats) Pending() uint64 { return s.Published - s.Acked - s.Dropped }

// Publisher turns object changes into integration messages.
type Publisher struct {
	js   jetstream.JetStream
	opts Options
	// last holds the last published (or baseline) summary per
	// object, as JSON, by "resource/namespace/name".
	last map[string][]byte
	// sent hands the messages awaiting their acknowledgement to ackLoop.
	sent chan *inflight
	// stream is EDGE_EVENTS, looked up by the first catch-up.
	stream jetstream.Stream

	published, acked, duplicates, retries, dropped atomic.Uint64
}

// inflight is a message awaiting the stream's acknowledgement.
type inflight struct {
	msg      *nats.Msg
	first    time.Time
	attempts int
	ack      jetstream.PubAckFuture
}

// New returns a publisher that publishes on nc.
func New(nc *nats.Conn, opts Options) (*Publisher, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.RetryFor <= 0 || opts.RetryFor > DefaultRetryFor {
		opts.RetryFor = DefaultRetryFor
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(opts.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("integrations publisher: jetstream: %w", err)
	}
	return &Publisher{js: js, opts: opts, last: map[string][]byte{}, sent: make(chan *inflight, 1024)}, nil
}

// Start ensures the EDGE_EVENTS stream and runs the publisher on w in the
// background. stop ends it and waits for it.
func Start(ctx context.Context, w Watcher, nc *nats.Conn, opts Options, streamOpts messaging.BucketOptions) (stop func(), err error) {
	p, err := New(nc, opts)
	if err != nil {
		return nil, err
	}
	if _, err := messaging.EnsureEventsStream(ctx, p.js, streamOpts); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx, w) })
	return func() { cancel(); wg.Wait() }, nil
}

// Stats returns what the publisher sent so far.
func (p *Publisher) Stats() Stats {
	// Read in the reverse order of the updates, so that Pending never
	// underflows.
	s := Stats{Dropped: p.dropped.Load(), Acked: p.acked.Load(), Duplicates: p.duplicates.Load(), Retries: p.retries.Load()}
	s.Published = p.published.Load()
	return s
}

// Run publishes the changes seen by w until ctx is done, restarting the
// watch when it ends.
func (p *Publisher) Run(ctx context.Context, w Watcher) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { p.ackLoop(ctx) })
	baseline := true
	for ctx.Err() == nil {
		ch, err := w.WatchAll(ctx)
		if err != nil {
			p.opts.Logger.WarnContext(ctx, "integrations: watch", "err", err)
		} else {
			synced := false
			for ev := range ch {
				if ev.Type == store.Synced {
					synced, baseline = true, false
					if p.opts.OnSynced != nil {
						p.opts.OnSynced()
					}
					continue
				}
				mode := Live
				if !synced && baseline {
					mode = Baseline
				} else if !synced {
					mode = CatchUp
				}
				if err := p.Handle(ctx, ev, mode); err != nil {
					p.opts.Logger.WarnContext(ctx, "integrations: publish", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(p.opts.Retry):
		}
	}
}

// Mode tells Handle where an event comes from.
type Mode int

const (
	// Live events are changes seen as they happen: what changed is
	// published.
	Live Mode = iota
	// Baseline events are the objects present when the first watch
	// started: their summary is only recorded.
	Baseline
	// CatchUp events are the objects present when a later watch started:
	// what changed since the watch before is published, unless the last
	// message the stream holds for the object already tells it. (Another
	// control plane published it meanwhile, with the resourceVersion of
	// the change; this one only sees the object's current one.)
	CatchUp
)

// Handle publishes what ev changed. Run calls it; the acknowledgements of
// what it sends are awaited by Run.
func (p *Publisher) Handle(ctx context.Context, ev store.Event, mode Mode) error {
	baselineOnly := mode == Baseline
	deleted := ev.Type == client.Deleted
	switch o := ev.Object.(type) {
	case *manifests.Event:
		key := "events/" + o.Namespace + "/" + o.Name
		if deleted {
			delete(p.last, key) // expired by the event GC: nothing to tell
			return nil
		}
		msg := eventMessage(o)
		sum, _ := json.Marshal([]any{o.UID, o.Count, o.LastTimestamp, o.Message, o.Reason})
		if !p.changed(key, sum, baselineOnly) {
			return nil
		}
		return p.publish(ctx, messaging.EventSubject(o.InvolvedObject.Namespace, o.InvolvedObject.Kind, o.InvolvedObject.Name),
			"event/"+o.UID+"/"+o.ResourceVersion, msg)
	case *manifests.Pod:
		key := "pods/" + o.Namespace + "/" + o.Name
		s := podSummary(o)
		s.Deleted = deleted
		sum, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("pod %s/%s: %w", o.Namespace, o.Name, err)
		}
		if !p.changed(key, sum, baselineOnly) {
			return nil
		}
		if deleted {
			delete(p.last, key)
		}
		if mode == CatchUp && p.stored(ctx, messaging.PodStatusSubject(o.Namespace, o.Name), func(data []byte) bool {
			var m PodStatus
			if json.Unmarshal(data, &m) != nil || m.UID != o.UID {
				return false
			}
			b, err := json.Marshal(m.PodSummary)
			return err == nil && bytes.Equal(b, sum)
		}) {
			return nil
		}
		msg := PodStatus{Schema: SchemaPodStatus, Namespace: o.Namespace, Name: o.Name, UID: o.UID,
			ResourceVersion: o.ResourceVersion, Time: p.opts.Now().UTC(), PodSummary: s}
		return p.publish(ctx, messaging.PodStatusSubject(o.Namespace, o.Name), "pod/"+o.UID+"/"+o.ResourceVersion, msg)
	case *manifests.Node:
		key := "nodes/" + o.Name
		msg := nodeMessage(o, p.opts.Now().UTC())
		if deleted {
			msg.State = NodeDeleted
		}
		sum, _ := json.Marshal(msg.NodeSummary)
		if !p.changed(key, sum, baselineOnly) {
			return nil
		}
		if deleted {
			delete(p.last, key)
		}
		if mode == CatchUp && p.stored(ctx, messaging.NodeStatusSubject(o.Name), func(data []byte) bool {
			var m NodeStatus
			return json.Unmarshal(data, &m) == nil && m.UID == o.UID && m.NodeSummary == msg.NodeSummary
		}) {
			return nil
		}
		return p.publish(ctx, messaging.NodeStatusSubject(o.Name), "node/"+o.UID+"/"+o.ResourceVersion, msg)
	}
	return nil
}

// changed records sum as the summary of key and reports whether it
// differs from the one before (always false for a baseline).
func (p *Publisher) changed(key string, sum []byte, baselineOnly bool) bool {
	prev, had := p.last[key]
	p.last[key] = sum
	if baselineOnly {
		return false
	}
	return !had || !bytes.Equal(prev, sum)
}

// stored reports whether the last message the stream holds on subject
// satisfies same. A failed lookup counts as no.
func (p *Publisher) stored(ctx context.Context, subject string, same func(data []byte) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, p.opts.AckTimeout)
	defer cancel()
	if p.stream == nil {
		s, err := p.js.Stream(ctx, messaging.StreamEvents)
		if err != nil {
			p.opts.Logger.WarnContext(ctx, "integrations: catch up", "err", err)
			return false
		}
		p.stream = s
	}
	m, err := p.stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			p.opts.Logger.WarnContext(ctx, "integrations: catch up", "subject", subject, "err", err)
		}
		return false
	}
	return same(m.Data)
}

func (p *Publisher) publish(ctx context.Context, subject, msgID string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", subject, err)
	}
	m := nats.NewMsg(messaging.IngestSubject(subject))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, msgID)
	p.published.Add(1)
	ack, err := p.js.PublishMsgAsync(m, jetstream.WithStallWait(p.opts.AckTimeout))
	if err != nil {
		p.dropped.Add(1)
		return fmt.Errorf("publish %s (%s): %w", subject, msgID, err)
	}
	select {
	case p.sent <- &inflight{msg: m, first: time.Now(), attempts: 1, ack: ack}:
		return nil
	case <-ctx.Done():
		p.dropped.Add(1)
		return fmt.Errorf("publish %s (%s): %w", subject, msgID, ctx.Err())
	}
}

// ackLoop awaits the acknowledgement of each message sent, in order, and
// sends again those that got none, until ctx is done.
func (p *Publisher) ackLoop(ctx context.Context) {
	var queue []*inflight
	for {
		if len(queue) == 0 {
			select {
			case f := <-p.sent:
				queue = append(queue, f)
			case <-ctx.Done():
				return
			}
		}
		f := queue[0]
		select {
		case nf := <-p.sent:
			queue = append(queue, nf)
		case pa := <-f.ack.Ok():
			queue = queue[1:]
			p.acked.Add(1)
			if pa.Duplicate {
				p.duplicates.Add(1)
			}
		case err := <-f.ack.Err():
			queue = queue[1:]
			if nf := p.resend(ctx, f, err); nf != nil {
				queue = append(queue, nf)
			}
		case <-ctx.Done():
			return
		}
	}
}

// resend sends f again after it failed with cause, and returns it with
// its new acknowledgement, or nil once RetryFor has passed or ctx is done.
func (p *Publisher) resend(ctx context.Context, f *inflight, cause error) *inflight {
	for {
		if time.Since(f.first) >= p.opts.RetryFor || ctx.Err() != nil {
			p.dropped.Add(1)
			p.opts.Logger.WarnContext(ctx, "integrations: message dropped: not acknowledged by the stream",
				"subject", f.msg.Subject, "id", f.msg.Header.Get(nats.MsgIdHdr), "attempts", f.attempts, "err", cause)
			return nil
		}
		// A timeout has already waited AckTimeout; other failures (no
		// stream, disconnected) come at once, so back off.
		if !errors.Is(cause, jetstream.ErrAsyncPublishTimeout) {
			wait := min(time.Duration(f.attempts)*100*time.Millisecond, 2*time.Second)
			select {
			case <-ctx.Done():
				continue
			case <-time.After(wait):
			}
		}
		f.attempts++
		p.retries.Add(1)
		ack, err := p.js.PublishMsgAsync(f.msg, jetstream.WithStallWait(p.opts.AckTimeout))
		if err != nil {
			cause = err
			continue
		}
		return &inflight{msg: f.msg, first: f.first, attempts: f.attempts, ack: ack}
	}
}
