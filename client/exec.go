package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// ExecRequest asks the agent of a pod's node to run a command in one of its
// containers (messaging.NodeSubject(node, messaging.NodeVerbExec)). The
// agent replies with a Response holding ExecStarted or an error, then sends
// the output as ExecChunk requests to Inbox (each answered, empty, by the
// client: an unanswered chunk ends the session). With Stdin the client
// publishes ExecInput messages to messaging.NodeExecStdinSubject.
type ExecRequest struct {
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container,omitempty"`
	Command   []string `json:"command"`
	Stdin     bool     `json:"stdin,omitempty"`
	TTY       bool     `json:"tty,omitempty"`
	Inbox     string   `json:"inbox"`
}

// ExecStarted is the result of an accepted ExecRequest.
type ExecStarted struct {
	Session string `json:"session"`
}

// Exec output streams.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// ExecChunk is a piece of a command's output. The last chunk of a session
// carries Exit (the command ended) or Error (it could not run, or broke).
type ExecChunk struct {
	Stream string       `json:"stream,omitempty"`
	Data   []byte       `json:"data,omitempty"`
	Exit   *int         `json:"exit,omitempty"`
	Error  *StatusError `json:"error,omitempty"`
}

// ExecInput is a piece of a command's stdin; EOF closes it.
type ExecInput struct {
	Data []byte `json:"data,omitempty"`
	EOF  bool   `json:"eof,omitempty"`
}

// MaxExecChunk bounds the data of one ExecChunk or ExecInput.
const MaxExecChunk = 256 << 10

// ExecStreams are the local ends of an exec session. Stdin is read only
// when the request asks for it; with a TTY everything arrives on Stdout.
type ExecStreams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Exec runs req.Command in a container through the agent of node and
// returns the command's exit code once it ends. ctx ends the session early.
func (c *Client) Exec(ctx context.Context, node string, req ExecRequest, s ExecStreams) (int, error) {
	if s.Stdout == nil {
		s.Stdout = io.Discard
	}
	if s.Stderr == nil {
		s.Stderr = io.Discard
	}
	msgs := make(chan *nats.Msg, 256)
	req.Inbox = c.nc.NewInbox()
	sub, err := c.nc.ChanSubscribe(req.Inbox, msgs)
	if err != nil {
		return 0, fmt.Errorf("exec: subscribe to output inbox: %w", err)
	}
	defer sub.Unsubscribe()
	body, err := json.Marshal(req)
	if err != nil {
		return 0, fmt.Errorf("exec: encode request: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, defaultTimeout)
	msg, err := c.nc.RequestWithContext(rctx, messaging.NodeSubject(node, messaging.NodeVerbExec), body)
	cancel()
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return 0, Errorf(CodeUnavailable, "node %q is not reachable", node)
		}
		return 0, fmt.Errorf("exec in %s/%s on node %q: %w", req.Namespace, req.Pod, node, err)
	}
	var resp Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("exec: decode reply: %w", err)
	}
	if resp.Error != nil {
		return 0, resp.Error
	}
	var started ExecStarted
	if err := json.Unmarshal(resp.Result, &started); err != nil {
		return 0, fmt.Errorf("exec: decode result: %w", err)
	}
	if req.Stdin && s.Stdin != nil {
		go c.sendStdin(ctx, messaging.NodeExecStdinSubject(node, started.Session), s.Stdin)
	}
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case m := <-msgs:
			var chunk ExecChunk
			if err := json.Unmarshal(m.Data, &chunk); err != nil {
				return 0, fmt.Errorf("exec: decode output: %w", err)
			}
			w := s.Stdout
			if chunk.Stream == StreamStderr {
				w = s.Stderr
			}
			var werr error
			if len(chunk.Data) > 0 {
				_, werr = w.Write(chunk.Data)
			}
			if m.Reply != "" && werr == nil {
				m.Respond(nil)
			}
			switch {
			case werr != nil:
				return 0, fmt.Errorf("exec: write output: %w", werr)
			case chunk.Error != nil:
				return 0, chunk.Error
			case chunk.Exit != nil:
				return *chunk.Exit, nil
			}
		}
	}
}

// sendStdin publishes what r yields to subj, then the end of input.
func (c *Client) sendStdin(ctx context.Context, subj string, r io.Reader) {
	buf := make([]byte, 32<<10)
	for ctx.Err() == nil {
		n, err := r.Read(buf)
		if n > 0 {
			raw, _ := json.Marshal(ExecInput{Data: buf[:n]})
			if c.nc.Publish(subj, raw) != nil {
				return
			}
		}
		if err != nil {
			break
		}
	}
	raw, _ := json.Marshal(ExecInput{EOF: true})
	c.nc.Publish(subj, raw)
	// Flush so that the end of input is not left in the buffer when the
	// caller exits right after the command does.
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.nc.FlushWithContext(fctx)
}
