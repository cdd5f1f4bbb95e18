package edgeagent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// statusAPI records UpdateStatus calls and fails while down is set.
type statusAPI struct {
	fakeAPI
	mu       sync.Mutex
	down     bool
	failures int
	sent     []string // namespace/name phase
}

func (s *statusAPI) UpdateStatus(_ context.Context, obj manifests.Object) (manifests.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := obj.(*manifests.Pod)
	if s.down {
		s.failures++
		return nil, client.Errorf(client.CodeUnavailable, "down")
	}
	if p.Name == "gone" {
		return nil, client.Errorf(client.CodeNotFound, "pods %q not found", p.Name)
	}
	s.sent = append(s.sent, p.Namespace+"/"+p.Name+" "+p.Status.Phase)
	return p, nil
}

func (s *statusAPI) sentList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sent...)
}

func statusPod(name, phase string) *manifests.Pod {
	return &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"}, Status: manifests.PodStatus{Phase: phase}}
}

func TestStatusQueueLatestWinsAndRetries(t *testing.T) {
	api := &statusAPI{down: true}
	q := newStatusQueue(api, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	q.put(statusPod("a", "Pending"))
	q.put(statusPod("gone", "Running"))
	q.put(statusPod("a", "Running")) // replaces the unsent Pending
	eventually(t, 5*time.Second, func() error {
		api.mu.Lock()
		defer api.mu.Unlock()
		if api.failures == 0 {
			return fmt.Errorf("no attempt yet")
		}
		return nil
	})
	api.mu.Lock()
	api.down = false
	api.mu.Unlock()
	eventually(t, 5*time.Second, func() error {
		sent := api.sentList()
		if len(sent) != 1 || sent[0] != "default/a Running" {
			return fmt.Errorf("sent %v", sent)
		}
		return nil
	})
	q.mu.Lock()
	left := len(q.pending)
	q.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d statuses still pending (NotFound must be dropped)", left)
	}
}
