package edgeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

var errReconnected = errors.New("reconnected: resync")

// watchAssignments keeps a KV watcher on the node's assignments. Each new
// watcher first delivers every current assignment, after which the local
// pods that are no longer assigned are removed: that is the resync after a
// reconnection or a control-plane restart.
func (a *Agent) watchAssignments(ctx context.Context, js jetstream.JetStream) {
	delay := 250 * time.Millisecond
	for {
		err := a.watchOnce(ctx, js)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errReconnected) {
			delay = 250 * time.Millisecond
			continue
		}
		a.log.Debug("watch assignments", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-a.conn.connected():
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (a *Agent) watchOnce(ctx context.Context, js jetstream.JetStream) error {
	reconnected := a.conn.connected()
	kv, err := js.KeyValue(ctx, messaging.BucketAssignments)
	if err != nil {
		return fmt.Errorf("open %s: %w", messaging.BucketAssignments, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.Watch(wctx, messaging.AssignmentFilter(a.cfg.NodeName))
	if err != nil {
		return fmt.Errorf("watch %s: %w", messaging.BucketAssignments, err)
	}
	defer w.Stop()
	seen := map[string]bool{}
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconnected:
			return errReconnected
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				if initial {
					initial = false
					a.removeAllBut(seen)
					seen = nil
				}
				continue
			}
			ns, name, put := a.applyEntry(ctx, e)
			if initial && put {
				seen[podKey(ns, name)] = true
			}
		}
	}
}

// applyEntry applies one assignment change; put is true when the pod is
// assigned.
func (a *Agent) applyEntry(ctx context.Context, e jetstream.KeyValueEntry) (ns, name string, put bool) {
	_, ns, name, err := messaging.ParseAssignmentKey(e.Key())
	if err != nil {
		a.log.Warn("bad assignment key", "key", e.Key(), "err", err)
		return "", "", false
	}
	if e.Operation() != jetstream.KeyValuePut {
		a.removePod(ns, name)
		return ns, name, false
	}
	var pod manifests.Pod
	if err := json.Unmarshal(e.Value(), &pod); err != nil {
		a.log.Warn("bad assignment", "key", e.Key(), "err", err)
		return ns, name, false
	}
	if pod.Namespace == "" {
		pod.Namespace = ns
	}
	if pod.Name == "" {
		pod.Name = name
	}
	a.upsert(ctx, &pod, e.Revision())
	return ns, name, true
}
