package client

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// Option configures a Client.
type Option func(*Client)

// AsNode makes the client send its API requests on the node-scoped
// subjects of node (messaging.NodeAPISubject): the agent of node uses it,
// and the API server authorizes each request for that node.
func AsNode(node string) Option { return func(c *Client) { c.node = node } }

// subject is where a request of verb goes.
func (c *Client) subject(verb string) string {
	if c.user != "" && c.node == "" {
		s, _ := c.userSubject(verb)
		return s
	}
	if c.node != "" {
		return messaging.NodeAPISubject(c.node, verb)
	}
	return messaging.APISubject(verb)
}

// boundNodes maps a connection to the node whose agent owns it (BindNode).
var boundNodes sync.Map // *nats.Conn -> string

// BindNode makes every Client later made on nc with New act as node (as
// with AsNode), so that all of an agent's code talks on its node's
// subjects, which are all its credentials allow. The returned func undoes
// it.
func BindNode(nc *nats.Conn, node string) (unbind func()) {
	boundNodes.Store(nc, node)
	return func() { boundNodes.CompareAndDelete(nc, node) }
}

// request sends a request and waits for the reply. The server drops a
// request these credentials may not publish and says so only
// asynchronously (-ERR Permissions Violation): that is noticed within
// violationPoll and returned as Forbidden, instead of waiting for the
// timeout.
func (c *Client) request(ctx context.Context, subject string, body []byte) (*nats.Msg, error) {
	before := c.nc.LastError()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		msg *nats.Msg
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := c.nc.RequestWithContext(ctx, subject, body)
		done <- result{m, err}
	}()
	t := time.NewTicker(violationPoll)
	defer t.Stop()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				if le := c.nc.LastError(); isViolation(le, subject) {
					return nil, forbiddenPublish(subject, le)
				}
			}
			return r.msg, r.err
		case <-t.C:
			if le := c.nc.LastError(); le != before && isViolation(le, subject) {
				return nil, forbiddenPublish(subject, le)
			}
		}
	}
}

// violationPoll is how often request looks for a permission violation.
const violationPoll = 20 * time.Millisecond

func isViolation(err error, subject string) bool {
	return err != nil && errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `Publish to "`+subject+`"`)
}

func forbiddenPublish(subject string, err error) *StatusError {
	return Errorf(CodeForbidden, "these credentials may not publish on %s (%v)", subject, err)
}
