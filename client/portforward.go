package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// Node verbs of byte-stream sessions served by each agent (see
// docs/port-forward-cp.md). They live under messaging.NodeSubject, so the
// node's permissions (messaging.NodeSubjectsFilter) already let its agent
// serve them, and read-only users, who may publish only the logs verb,
// cannot open them.
const (
	// NodeVerbPortForward opens a TCP connection to a pod's port.
	NodeVerbPortForward = "portforward"
	// NodeVerbCopy copies files into or out of a pod (a tar stream).
	NodeVerbCopy = "cp"
)

// TunnelSubject is where the client of a session publishes to the agent of
// node: the data, end of data, acknowledgements and keepalives.
func TunnelSubject(node, verb, session string) string {
	return messaging.NodeSubject(node, verb) + ".session." + messaging.EncodeToken(session)
}

// PortForwardRequest asks the agent of a pod's node to connect to a port of
// the pod (messaging.NodeSubject(node, NodeVerbPortForward)). The agent
// replies with a Response holding TunnelStarted or an error (no such pod,
// port not declared by a wasm pod, connection refused), then relays bytes
// between the connection and Inbox (see Tunnel).
type PortForwardRequest struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Port      int32  `json:"port"`
	Inbox     string `json:"inbox"`
}

// TunnelStarted is the result of an accepted session request.
type TunnelStarted struct {
	Session string `json:"session"`
}

// Tunnel message kinds, in the TunnelHeader header. Data travels as the raw
// message body (no encoding), everything else is header only.
const (
	TunnelHeader    = "Edge-Tunnel"
	tunnelData      = "data"
	tunnelEOF       = "eof"   // the sender will send no more data (half-close)
	tunnelAck       = "ack"   // the receiver has written one data message
	tunnelPing      = "ping"  // keepalive
	tunnelClose     = "close" // the session is over; maybe with an error
	tunnelErrCode   = "Edge-Code"
	tunnelErrReason = "Edge-Error"
)

// Tunnel defaults.
const (
	// TunnelChunk bounds the data of one message.
	TunnelChunk = 128 << 10
	// TunnelWindow is how many data messages may be unacknowledged: at
	// most TunnelWindow*TunnelChunk bytes (1 MiB) are in flight per
	// direction, whatever the speed of the reader at the far end. Fewer,
	// larger messages cost less per byte than many small ones.
	TunnelWindow = 8
	// TunnelKeepalive is how often each end pings the other.
	TunnelKeepalive = 5 * time.Second
	// TunnelTimeout ends a session whose peer has sent nothing (data,
	// acknowledgement or ping) for that long: the peer or its link is gone.
	TunnelTimeout = 20 * time.Second
)

// Tunnel is one end of a byte-stream session over core NATS. Each end
// subscribes to its own subject and publishes to the other's. Flow control
// is a window of TunnelWindow unacknowledged data messages: a sender waits
// for a credit before each message and the receiver gives one back (an ack)
// once it has written the data to its destination, so a slow reader slows
// the sender down instead of filling memory. Messages of one publisher on
// one connection arrive in order, which core NATS guarantees.
type Tunnel struct {
	nc   *nats.Conn
	sub  *nats.Subscription
	peer atomic.Pointer[string]

	// Keepalive and Timeout default to TunnelKeepalive and TunnelTimeout.
	Keepalive time.Duration
	Timeout   time.Duration

	credits  chan struct{}
	inbound  chan *nats.Msg
	lastSeen atomic.Int64

	mu     sync.Mutex
	failed chan struct{}
	err    error
}

// NewTunnel subscribes to subject for what the peer sends. SetPeer must be
// called before Run.
func NewTunnel(nc *nats.Conn, subject string) (*Tunnel, error) {
	t := &Tunnel{
		nc:      nc,
		credits: make(chan struct{}, TunnelWindow),
		// A well-behaved peer never has more than TunnelWindow data
		// messages and one end of data outstanding.
		inbound: make(chan *nats.Msg, TunnelWindow+2),
		failed:  make(chan struct{}),
	}
	for range TunnelWindow {
		t.credits <- struct{}{}
	}
	t.lastSeen.Store(time.Now().UnixNano())
	sub, err := nc.Subscribe(subject, t.receive)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	t.sub = sub
	return t, nil
}

// SetPeer names the subject the peer listens on.
func (t *Tunnel) SetPeer(subject string) { t.peer.Store(&subject) }

// receive runs on the subscription's goroutine and never blocks.
func (t *Tunnel) receive(m *nats.Msg) {
	t.lastSeen.Store(time.Now().UnixNano())
	switch kind := m.Header.Get(TunnelHeader); kind {
	case tunnelAck:
		select {
		case t.credits <- struct{}{}:
		default: // more acks than data sent: ignore
		}
	case tunnelPing:
	case tunnelData, tunnelEOF:
		select {
		case t.inbound <- m:
		default:
			t.fail(errors.New("tunnel: the peer sent more than its window"), true)
		}
	case tunnelClose:
		var err error = io.ErrClosedPipe
		if reason := m.Header.Get(tunnelErrReason); reason != "" {
			err = &StatusError{Code: m.Header.Get(tunnelErrCode), Message: reason}
		}
		t.fail(err, false)
	default:
		t.fail(fmt.Errorf("tunnel: unknown message kind %q", kind), true)
	}
}

// fail ends the session with err (the first error wins) and, when tell is
// set, tells the peer.
func (t *Tunnel) fail(err error, tell bool) {
	t.mu.Lock()
	if t.err != nil {
		t.mu.Unlock()
		return
	}
	t.err = err
	close(t.failed)
	t.mu.Unlock()
	if tell {
		h := nats.Header{TunnelHeader: []string{tunnelClose}}
		if err != nil && !errors.Is(err, context.Canceled) {
			h.Set(tunnelErrReason, err.Error())
			code := CodeOf(err)
			if code == "" {
				code = CodeInternal
			}
			h.Set(tunnelErrCode, code)
		}
		t.publish(h, nil)
		t.nc.Flush()
	}
}

func (t *Tunnel) publish(h nats.Header, data []byte) error {
	p := t.peer.Load()
	if p == nil {
		return errors.New("tunnel: no peer")
	}
	return t.nc.PublishMsg(&nats.Msg{Subject: *p, Header: h, Data: data})
}

func (t *Tunnel) send(kind string, data []byte) error {
	return t.publish(nats.Header{TunnelHeader: []string{kind}}, data)
}

// Close ends the session (telling the peer, if it is still running) and
// unsubscribes.
func (t *Tunnel) Close() {
	t.fail(io.ErrClosedPipe, true)
	t.sub.Unsubscribe()
}

// closeWriter is a destination with a write side that can be closed alone
// (*net.TCPConn, an *io.PipeWriter as PipeCloser).
type closeWriter interface{ CloseWrite() error }

// Run relays src to the peer and what the peer sends to dst until both
// directions have ended (src at EOF and all of it written by the peer; the
// peer's end of data reached and written to dst), an error happens at
// either end, the peer goes silent for Timeout or ctx ends. When the peer's data ends, dst's CloseWrite is called if it has
// one. Run does not close src or dst: a caller blocked in src.Read is
// released by the caller closing src once Run has returned. The error is
// nil on a clean end, a *StatusError from the peer, or a local one.
func (t *Tunnel) Run(ctx context.Context, src io.Reader, dst io.Writer) error {
	defer t.sub.Unsubscribe()
	keepalive, timeout := t.Keepalive, t.Timeout
	if keepalive <= 0 {
		keepalive = TunnelKeepalive
	}
	if timeout <= 0 {
		timeout = TunnelTimeout
	}
	sent := make(chan struct{})
	go func() {
		if err := t.pump(src); err != nil {
			t.fail(err, true)
			return
		}
		close(sent)
	}()
	received := make(chan struct{})
	go func() {
		if err := t.drain(dst); err != nil {
			t.fail(err, true)
			return
		}
		close(received)
	}()
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	doneSending, doneReceiving := false, false
	for !doneSending || !doneReceiving {
		select {
		case <-ctx.Done():
			t.fail(ctx.Err(), true)
		case <-t.failed:
			t.mu.Lock()
			err := t.err
			t.mu.Unlock()
			return err
		case <-sent:
			doneSending, sent = true, nil
		case <-received:
			doneReceiving, received = true, nil
		case <-tick.C:
			if silent := time.Since(time.Unix(0, t.lastSeen.Load())); silent > timeout {
				t.fail(fmt.Errorf("tunnel: no word from the other end for %v", silent.Round(time.Second)), true)
				continue
			}
			if err := t.send(tunnelPing, nil); err != nil {
				// A closed connection; while NATS reconnects, messages
				// are buffered and the timeout decides.
				t.fail(fmt.Errorf("tunnel: %w", err), false)
			}
		}
	}
	// Both directions are done, unless they stopped for a failure.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	t.err = io.EOF // the end: a late Close tells the peer nothing
	close(t.failed)
	return nil
}

// pump reads src and sends it, one window credit per message.
func (t *Tunnel) pump(src io.Reader) error {
	buf := make([]byte, TunnelChunk)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-t.credits:
			case <-t.failed:
				return nil
			}
			if perr := t.send(tunnelData, buf[:n]); perr != nil {
				return fmt.Errorf("tunnel: send: %w", perr)
			}
			// The message is copied into the connection's buffer by
			// Publish, so buf may be reused.
		}
		if errors.Is(err, io.EOF) {
			if perr := t.send(tunnelEOF, nil); perr != nil {
				return fmt.Errorf("tunnel: send: %w", perr)
			}
			// This direction is over once the peer has written all of
			// it: every credit is back.
			for range TunnelWindow {
				select {
				case <-t.credits:
				case <-t.failed:
					return nil
				}
			}
			return nil
		}
		if err != nil {
			select {
			case <-t.failed:
				return nil // Run ended and the caller closed src
			default:
			}
			if CodeOf(err) != "" {
				return err
			}
			return fmt.Errorf("read: %w", err)
		}
	}
}

// drain writes what the peer sends to dst and acknowledges each message.
func (t *Tunnel) drain(dst io.Writer) error {
	for {
		var m *nats.Msg
		select {
		case m = <-t.inbound:
		case <-t.failed:
			return nil
		}
		if m.Header.Get(TunnelHeader) == tunnelEOF {
			if cw, ok := dst.(closeWriter); ok {
				if err := cw.CloseWrite(); err != nil {
					return fmt.Errorf("close write: %w", err)
				}
			}
			return nil
		}
		if _, err := dst.Write(m.Data); err != nil {
			select {
			case <-t.failed:
				return nil
			default:
			}
			if CodeOf(err) != "" {
				return err
			}
			return fmt.Errorf("write: %w", err)
		}
		if err := t.send(tunnelAck, nil); err != nil {
			return fmt.Errorf("tunnel: send: %w", err)
		}
	}
}

// PipeCloser makes an *io.PipeWriter a destination whose end of data
// closes the pipe (Run calls CloseWrite).
type PipeCloser struct{ *io.PipeWriter }

// CloseWrite closes the pipe.
func (p PipeCloser) CloseWrite() error { return p.PipeWriter.Close() }

// startTunnel subscribes a tunnel to a fresh inbox, sends the session
// request made by mkReq (given the inbox) to verb on node and points the
// tunnel at the session the agent opened.
func (c *Client) startTunnel(ctx context.Context, node, verb string, mkReq func(inbox string) any) (*Tunnel, error) {
	inbox := c.nc.NewInbox()
	t, err := NewTunnel(c.nc, inbox)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	body, err := json.Marshal(mkReq(inbox))
	if err != nil {
		t.sub.Unsubscribe()
		return nil, fmt.Errorf("%s: encode request: %w", verb, err)
	}
	rctx, cancel := context.WithTimeout(ctx, defaultTimeout)
	msg, err := c.request(rctx, messaging.NodeSubject(node, verb), body)
	cancel()
	if err != nil {
		t.sub.Unsubscribe()
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, Errorf(CodeUnavailable, "node %q is not reachable", node)
		}
		return nil, err
	}
	var resp Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		t.sub.Unsubscribe()
		return nil, fmt.Errorf("%s: decode reply: %w", verb, err)
	}
	if resp.Error != nil {
		t.sub.Unsubscribe()
		return nil, resp.Error
	}
	var started TunnelStarted
	if err := json.Unmarshal(resp.Result, &started); err != nil || started.Session == "" {
		t.sub.Unsubscribe()
		return nil, fmt.Errorf("%s: decode result: %q: %v", verb, resp.Result, err)
	}
	t.SetPeer(TunnelSubject(node, verb, started.Session))
	return t, nil
}

// PortForward connects conn to port req.Port of the pod through the agent
// of node, and relays both ways until both directions have ended, either
// end fails, or ctx ends. It does not close conn. The error of a refused
// connection comes before any byte is relayed.
func (c *Client) PortForward(ctx context.Context, node string, req PortForwardRequest, conn io.ReadWriter) error {
	t, err := c.startTunnel(ctx, node, NodeVerbPortForward, func(inbox string) any {
		req.Inbox = inbox
		return req
	})
	if err != nil {
		return err
	}
	if err := t.Run(ctx, conn, conn); err != nil {
		return fmt.Errorf("port-forward to %s/%s:%d: %w", req.Namespace, req.Pod, req.Port, err)
	}
	return nil
}
