// Package publish publishes Events and the status changes of pods and
// nodes on the integration subjects (messaging.EventSubject,
// PodStatusSubject, NodeStatusSubject), which the EDGE_EVENTS stream keeps
// for consumers that were offline. See docs/integrations.md.
//
// One watcher of the object store feeds it. A status message goes out only
// when the summary (phase, conditions, containers; a node's state)
// changed. The objects present when the first watch starts are the
// baseline and are not published; a later re-watch publishes what changed
// meanwhile. Each message carries Nats-Msg-Id kind/uid/resourceVersion, so
// the stream stores once what several control planes publish.
package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// Watcher is the part of the store the publisher reads.
type Watcher interface {
	WatchAll(ctx context.Context) (<-chan store.Event, error)
}

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
}

// Publisher turns object changes into integration messages.
type Publisher struct {
	nc   *nats.Conn
	opts Options
	// last holds the last published (or baseline) summary per
	// object, as JSON, by "resource/namespace/name".
	last map[string][]byte
}

// New returns a publisher that publishes on nc.
func New(nc *nats.Conn, opts Options) *Publisher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	return &Publisher{nc: nc, opts: opts, last: map[string][]byte{}}
}

// Start ensures the EDGE_EVENTS stream and runs the publisher on w in the
// background. stop ends it and waits for it.
func Start(ctx context.Context, w Watcher, nc *nats.Conn, opts Options, streamOpts messaging.BucketOptions) (stop func(), err error) {
	js, err := jetstreamNew(nc)
	if err != nil {
		return nil, err
	}
	if _, err := messaging.EnsureEventsStream(ctx, js, streamOpts); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	p := New(nc, opts)
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx, w) })
	return func() { cancel(); wg.Wait() }, nil
}

// Run publishes the changes seen by w until ctx is done, restarting the
// watch when it ends.
func (p *Publisher) Run(ctx context.Context, w Watcher) {
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
				if err := p.Handle(ev, baseline && !synced); err != nil {
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

// Handle publishes what ev changed. With baselineOnly it only records the
// object's summary.
func (p *Publisher) Handle(ev store.Event, baselineOnly bool) error {
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
		return p.publish(messaging.EventSubject(o.InvolvedObject.Namespace, o.InvolvedObject.Kind, o.InvolvedObject.Name),
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
		msg := PodStatus{Schema: SchemaPodStatus, Namespace: o.Namespace, Name: o.Name, UID: o.UID,
			ResourceVersion: o.ResourceVersion, Time: p.opts.Now().UTC(), PodSummary: s}
		return p.publish(messaging.PodStatusSubject(o.Namespace, o.Name), "pod/"+o.UID+"/"+o.ResourceVersion, msg)
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
		return p.publish(messaging.NodeStatusSubject(o.Name), "node/"+o.UID+"/"+o.ResourceVersion, msg)
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

func (p *Publisher) publish(subject, msgID string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", subject, err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, msgID)
	if err := p.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}
