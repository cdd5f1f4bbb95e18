package edgeagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/nats-io/nats.go"
)

// execChunkTimeout is how long the agent waits for the client to take one
// piece of output before it ends the session.
const execChunkTimeout = 10 * time.Second

// execKeepalive is how often a quiet session checks that its client is still there.
const execKeepalive = 15 * time.Second

// serveExec answers exec requests for the node's pods.
func (a *Agent) serveExec(ctx context.Context) (func(), error) {
	subj := messaging.NodeSubject(a.cfg.NodeName, messaging.NodeVerbExec)
	sub, err := a.nc.Subscribe(subj, func(m *nats.Msg) {
		go a.handleExec(ctx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("serve exec on %s: %w", subj, err)
	}
	return func() { sub.Unsubscribe() }, nil
}

func respondExec(m *nats.Msg, started *client.ExecStarted, serr *client.StatusError) {
	resp := client.Response{Error: serr}
	if started != nil {
		resp.Result, _ = json.Marshal(started)
	}
	raw, _ := json.Marshal(resp)
	m.Respond(raw)
}

// execTarget is the running container an exec request names.
type execTarget struct {
	execer runtime.Execer
	id     string
}

func (a *Agent) execTarget(ctx context.Context, req client.ExecRequest) (execTarget, *client.StatusError) {
	if len(req.Command) == 0 {
		return execTarget{}, client.Errorf(client.CodeInvalid, "you must specify at least one command for the container")
	}
	w := a.worker(req.Namespace, req.Pod)
	if w == nil {
		return execTarget{}, client.Errorf(client.CodeNotFound, "pod %q not found on node %s", req.Pod, a.cfg.NodeName)
	}
	pod := w.pod()
	name := req.Container
	if name == "" {
		if len(pod.Spec.Containers) == 0 {
			return execTarget{}, client.Errorf(client.CodeInvalid, "pod %q has no containers", req.Pod)
		}
		name = pod.Spec.Containers[0].Name
	}
	found := false
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		found = found || c.Name == name
	}
	if !found {
		return execTarget{}, client.Errorf(client.CodeInvalid, "container %s is not valid for pod %s", name, req.Pod)
	}
	handler := w.handler(pod)
	rt := a.cfg.Runtimes[handler]
	if rt == nil {
		return execTarget{}, client.Errorf(client.CodeUnavailable, "runtime handler %q is not available on node %s", handler, a.cfg.NodeName)
	}
	execer, ok := rt.(runtime.Execer)
	if !ok {
		return execTarget{}, client.Errorf(client.CodeInvalid, "exec is not supported for %s containers", handler)
	}
	w.mu.Lock()
	id := w.rec.Containers[name].ID
	w.mu.Unlock()
	notRunning := client.Errorf(client.CodeInvalid, "container %s in pod %s is not running", name, req.Pod)
	if id == "" {
		return execTarget{}, notRunning
	}
	st, err := rt.ContainerStatus(ctx, id)
	if err != nil || st.State != runtime.StateRunning {
		return execTarget{}, notRunning
	}
	return execTarget{execer: execer, id: id}, nil
}

func newSessionID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (a *Agent) handleExec(ctx context.Context, m *nats.Msg) {
	var req client.ExecRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		respondExec(m, nil, client.Errorf(client.CodeInvalid, "exec: decode request: %v", err))
		return
	}
	if req.Inbox == "" {
		respondExec(m, nil, client.Errorf(client.CodeInvalid, "exec: no inbox for the output"))
		return
	}
	target, serr := a.execTarget(ctx, req)
	if serr != nil {
		respondExec(m, nil, serr)
		return
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	session := newSessionID()
	var stdin io.Reader
	if req.Stdin {
		in, err := a.execStdin(ectx, session)
		if err != nil {
			respondExec(m, nil, client.Errorf(client.CodeInternal, "exec: %v", err))
			return
		}
		// Unblocks the stdin pump when the command ends without reading all.
		defer in.Close()
		stdin = in
	}
	respondExec(m, &client.ExecStarted{Session: session}, nil)
	out := &execOutput{ctx: ectx, nc: a.nc, inbox: req.Inbox, cancel: cancel}
	r := runtime.ExecRequest{Cmd: req.Command, Stdin: stdin, Stdout: out.stream(client.StreamStdout), TTY: req.TTY}
	if !req.TTY {
		r.Stderr = out.stream(client.StreamStderr)
	}
	kctx, stopKeepalive := context.WithCancel(ectx)
	go out.keepalive(kctx)
	code, err := target.execer.Exec(ectx, target.id, r)
	stopKeepalive()
	if out.failed() || ctx.Err() != nil {
		return // the client went away, or the agent stops
	}
	final := client.ExecChunk{}
	if err != nil {
		final.Error = client.Errorf(client.CodeInternal, "exec in %s/%s: %v", req.Namespace, req.Pod, err)
		if errors.Is(err, runtime.ErrState) || errors.Is(err, runtime.ErrNotFound) {
			final.Error.Code = client.CodeInvalid
		}
	} else {
		final.Exit = &code
	}
	out.send(final)
}

// execStdin subscribes to the session's stdin subject and returns a reader
// of what arrives there, closed at the end of input or of ctx.
func (a *Agent) execStdin(ctx context.Context, session string) (*io.PipeReader, error) {
	msgs := make(chan *nats.Msg, 256)
	subj := messaging.NodeExecStdinSubject(a.cfg.NodeName, session)
	sub, err := a.nc.ChanSubscribe(subj, msgs)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subj, err)
	}
	pr, pw := io.Pipe()
	go func() {
		defer sub.Unsubscribe()
		for {
			select {
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			case m := <-msgs:
				var in client.ExecInput
				if err := json.Unmarshal(m.Data, &in); err != nil {
					pw.CloseWithError(fmt.Errorf("decode stdin: %w", err))
					return
				}
				if len(in.Data) > 0 {
					if _, err := pw.Write(in.Data); err != nil {
						return // the command closed its stdin
					}
				}
				if in.EOF {
					pw.Close()
					return
				}
			}
		}
	}()
	return pr, nil
}

// execOutput sends a command's output to the client's inbox, one chunk at
// a time, and ends the session when the client stops answering.
type execOutput struct {
	ctx    context.Context
	nc     *nats.Conn
	inbox  string
	cancel context.CancelFunc

	mu  sync.Mutex
	err error
}

func (o *execOutput) stream(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		for off := 0; off < len(p); off += client.MaxExecChunk {
			end := min(off+client.MaxExecChunk, len(p))
			if err := o.send(client.ExecChunk{Stream: name, Data: p[off:end]}); err != nil {
				return off, err
			}
		}
		return len(p), nil
	})
}

func (o *execOutput) failed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err != nil
}

func (o *execOutput) send(chunk client.ExecChunk) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	raw, _ := json.Marshal(chunk)
	ctx, cancel := context.WithTimeout(o.ctx, execChunkTimeout)
	defer cancel()
	if _, err := o.nc.RequestWithContext(ctx, o.inbox, raw); err != nil {
		o.err = fmt.Errorf("send exec output: %w", err)
		o.cancel()
		return o.err
	}
	return nil
}

// keepalive sends an empty chunk every execKeepalive while the command is
// quiet, so that a client gone away ends the session (and the command).
func (o *execOutput) keepalive(ctx context.Context) {
	t := time.NewTicker(execKeepalive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if o.send(client.ExecChunk{}) != nil {
				return
			}
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
