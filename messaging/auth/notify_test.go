package auth

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgeorch/edgeorch/messaging"
)

// A node receives the republished changes of its own assignments and may
// not subscribe to another node's, nor to every node's.
func TestNodeNotifiedOfItsOwnAssignmentsOnly(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var x errs
	nc := e.connect(t, e.creds(t, "a", RoleNode, "a"), nats.ErrorHandler(x.handler))
	own, err := nc.SubscribeSync(messaging.AssignmentNotifyFilter("a"))
	if err != nil {
		t.Fatal(err)
	}
	others := map[string]*nats.Subscription{}
	for _, subj := range []string{messaging.AssignmentNotifyFilter("b"), messaging.AssignmentNotifySubject(">")} {
		if others[subj], err = nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "subscription violations", func() bool {
		for subj := range others {
			if !x.has(`Subscription to "` + subj + `"`) {
				return false
			}
		}
		return true
	})
	if x.has(`Subscription to "` + messaging.AssignmentNotifyFilter("a") + `"`) {
		t.Fatal("node a refused its own notifications")
	}
	for _, n := range []string{"b", "a"} {
		if _, err := e.b.Assignments.Put(ctx, messaging.AssignmentKey(n, "default", "p-"+n), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := own.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("node a's notification: %v", err)
	}
	if want := messaging.AssignmentNotifySubject(messaging.AssignmentKey("a", "default", "p-a")); m.Subject != want {
		t.Fatalf("node a notified on %s, want %s (node b's change must not reach it)", m.Subject, want)
	}
	for subj, sub := range others {
		if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("node a's subscription %s got %s", subj, m.Subject)
		}
	}
}
