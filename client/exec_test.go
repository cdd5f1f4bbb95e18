package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// TestExecProtocol plays the agent's side of an exec session by hand:
// stdin arrives on the session subject until EOF, chunks go to the inbox
// in order, an empty keepalive chunk is harmless, Exit ends the session.
func TestExecProtocol(t *testing.T) {
	cl, _ := startStore(t)
	nc := cl.Conn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// No agent: a clear error.
	if _, err := cl.Exec(ctx, "nowhere", client.ExecRequest{Command: []string{"true"}}, client.ExecStreams{}); client.CodeOf(err) != client.CodeUnavailable || !strings.Contains(err.Error(), `node "nowhere" is not reachable`) {
		t.Fatalf("exec without agent: %v", err)
	}

	stdin := make(chan *nats.Msg, 16)
	in, err := nc.ChanSubscribe(messaging.NodeExecStdinSubject("n1", "s.1"), stdin)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Unsubscribe()
	var sessions sync.WaitGroup
	defer sessions.Wait()
	sub, err := nc.Subscribe(messaging.NodeSubject("n1", messaging.NodeVerbExec), func(m *nats.Msg) {
		var req client.ExecRequest
		json.Unmarshal(m.Data, &req)
		if req.Command[0] == "refuse" {
			raw, _ := json.Marshal(client.Response{Error: client.Errorf(client.CodeInvalid, "container x is not running")})
			m.Respond(raw)
			return
		}
		res, _ := json.Marshal(client.ExecStarted{Session: "s.1"})
		raw, _ := json.Marshal(client.Response{Result: res})
		m.Respond(raw)
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			var got bytes.Buffer
			for msg := range stdin {
				var ei client.ExecInput
				json.Unmarshal(msg.Data, &ei)
				got.Write(ei.Data)
				if ei.EOF {
					break
				}
			}
			send := func(c client.ExecChunk) {
				raw, _ := json.Marshal(c)
				if _, err := nc.Request(req.Inbox, raw, 5*time.Second); err != nil {
					t.Errorf("chunk not acknowledged: %v", err)
				}
			}
			send(client.ExecChunk{Stream: client.StreamStdout, Data: []byte("in:")})
			send(client.ExecChunk{})
			send(client.ExecChunk{Stream: client.StreamStdout, Data: got.Bytes()})
			send(client.ExecChunk{Stream: client.StreamStderr, Data: []byte("warn\n")})
			if req.Command[0] == "break" {
				send(client.ExecChunk{Error: client.Errorf(client.CodeInternal, "exec broke")})
				return
			}
			code := 42
			send(client.ExecChunk{Exit: &code})
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	var out, errb bytes.Buffer
	code, err := cl.Exec(ctx, "n1", client.ExecRequest{Namespace: "default", Pod: "p", Command: []string{"cat"}, Stdin: true},
		client.ExecStreams{Stdin: strings.NewReader("hello"), Stdout: &out, Stderr: &errb})
	if err != nil || code != 42 || out.String() != "in:hello" || errb.String() != "warn\n" {
		t.Fatalf("exec: code %d err %v stdout %q stderr %q", code, err, out.String(), errb.String())
	}

	_, err = cl.Exec(ctx, "n1", client.ExecRequest{Command: []string{"refuse"}}, client.ExecStreams{})
	if client.CodeOf(err) != client.CodeInvalid || err.Error() != "container x is not running" {
		t.Fatalf("refused exec: %v", err)
	}
	_, err = cl.Exec(ctx, "n1", client.ExecRequest{Command: []string{"break"}, Stdin: true}, client.ExecStreams{Stdin: strings.NewReader("")})
	if client.CodeOf(err) != client.CodeInternal || err.Error() != "exec broke" {
		t.Fatalf("broken exec: %v", err)
	}
}
