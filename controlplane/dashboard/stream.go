package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// maxBatchEvents bounds the Events one stream message carries; the others
// are counted as dropped (the page reloads /api/events when it sees one).
const maxBatchEvents = 100

// pingInterval keeps idle streams (and proxies) alive.
const pingInterval = 15 * time.Second

// Batch is the data of one "batch" message of /api/stream: how many
// objects of each resource changed since the last batch, and the Events
// created or updated meanwhile (oldest first).
type Batch struct {
	Changed map[string]int `json:"changed"`
	Events  []EventRow     `json:"events"`
	// Dropped counts the Events left out of Events (more than
	// maxBatchEvents arrived in one interval).
	Dropped int `json:"dropped"`
}

// hub collects changes and fans them out, in batches, to stream clients.
// A client too slow to take a batch is disconnected; its browser
// reconnects and reloads.
type hub struct {
	mu      sync.Mutex
	subs    map[chan []byte]struct{}
	pending Batch
	closed  bool
}

func newHub() *hub {
	return &hub{subs: map[chan []byte]struct{}{}, pending: Batch{Changed: map[string]int{}}}
}

// subscribe returns a channel of encoded batches, closed when the client
// is dropped or the hub stops; nil when maxStreams clients are connected.
func (h *hub) subscribe() chan []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.subs) >= maxStreams {
		return nil
	}
	ch := make(chan []byte, 8)
	h.subs[ch] = struct{}{}
	return ch
}

func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

// note records a change of resource, and e when it is an Event.
func (h *hub) note(resource string, e *EventRow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending.Changed[resource]++
	if e == nil {
		return
	}
	if len(h.pending.Events) < maxBatchEvents {
		h.pending.Events = append(h.pending.Events, *e)
	} else {
		h.pending.Dropped++
	}
}

// run sends the pending batch every interval until ctx is done.
func (h *hub) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.flush()
		}
	}
}

func (h *hub) flush() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pending.Changed) == 0 {
		return
	}
	if h.pending.Events == nil {
		h.pending.Events = []EventRow{}
	}
	data, err := json.Marshal(h.pending)
	h.pending = Batch{Changed: map[string]int{}}
	if err != nil {
		return // plain data: cannot fail
	}
	for ch := range h.subs {
		select {
		case ch <- data:
		default: // too slow: drop it, its browser reconnects
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// closeAll ends every stream.
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

// changed is the informer handler of resource: it tells the hub. Events
// listed while the cache first fills are not streamed one by one (the page
// loads them from /api/events).
func (s *Server) changed(resource string, inf *controller.Informer) controller.Handler {
	return func(_, obj manifests.Object) {
		var row *EventRow
		if e, ok := obj.(*manifests.Event); ok && inf.HasSynced() {
			r := eventRow(e)
			row = &r
		}
		s.hub.note(resource, row)
	}
}

// handleStream serves /api/stream as Server-Sent Events: a "hello" message,
// then a "batch" message (Batch as JSON) whenever something changed, and
// a comment every pingInterval.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	ch := s.hub.subscribe()
	if ch == nil {
		http.Error(w, fmt.Sprintf("too many live streams (at most %d); try again later", maxStreams), http.StatusServiceUnavailable)
		return
	}
	defer s.hub.unsubscribe(ch)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\nevent: hello\ndata: {}\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case data, ok := <-ch:
			if !ok {
				return
			}
			_, err = fmt.Fprintf(w, "event: batch\ndata: %s\n\n", data)
		case <-ping.C:
			_, err = fmt.Fprint(w, ": ping\n\n")
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
