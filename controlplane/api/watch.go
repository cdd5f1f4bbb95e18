package api

import (
	"context"
	"encoding/json"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// rewatchDelay is the pause before the fanout watches again after its
// watcher ended unexpectedly.
const rewatchDelay = time.Second

// fanout republishes every change of a stored object as a client.WatchEvent
// on messaging.WatchSubject, so that one KV watcher serves every client
// watch, including changes written by controllers. Objects that existed
// before the fanout started are not republished: watchers list first.
//
// If the watcher ends before ctx does, fanout watches again and publishes
// the objects changed meanwhile (as MODIFIED); deletions in that gap are
// not seen by clients until they list again.
func (s *Server) fanout(ctx context.Context, events <-chan store.Event, rewatch func(context.Context) (<-chan store.Event, error), delay time.Duration) {
	var last uint64 // highest revision published (or skipped as initial)
	resumed := false
	for {
		s.forward(ctx, events, &last, resumed)
		if ctx.Err() != nil {
			return
		}
		s.log.Error("watch fanout: the objects watcher ended; watching again")
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			var err error
			if events, err = rewatch(ctx); err == nil {
				break
			}
			s.log.Error("watch fanout: watch again", "err", err)
		}
		resumed = true
	}
}

// forward publishes the events of one watcher until it ends.
func (s *Server) forward(ctx context.Context, events <-chan store.Event, last *uint64, resumed bool) {
	synced := false
	for {
		var ev store.Event
		var ok bool
		select {
		case <-ctx.Done():
			return
		case ev, ok = <-events:
		}
		if !ok {
			return
		}
		switch {
		case ev.Type == store.Synced:
			synced = true
			*last = max(*last, ev.Revision)
			continue
		case !synced && !resumed:
			continue // existed before the fanout started
		case !synced && ev.Revision <= *last:
			continue // published before the watcher ended
		case !synced:
			ev.Type = client.Modified // changed while nobody watched
		}
		*last = max(*last, ev.Revision)
		if err := s.publish(ev); err != nil {
			s.log.Warn("watch fanout", "type", ev.Type, "err", err)
		}
	}
}

func (s *Server) publish(ev store.Event) error {
	k, err := manifests.KindOf(ev.Object)
	if err != nil {
		return err
	}
	raw, err := encodeObject(ev.Object)
	if err != nil {
		return err
	}
	data, err := json.Marshal(client.WatchEvent{Type: ev.Type, Object: raw})
	if err != nil {
		return err
	}
	meta := ev.Object.GetObjectMeta()
	return s.nc.Publish(messaging.WatchSubject(k.Resource, meta.Namespace, meta.Name), data)
}
