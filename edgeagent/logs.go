package edgeagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime/logfile"
	"github.com/nats-io/nats.go"
)

// maxLogReply bounds the data of one reply (NATS payloads are limited).
const maxLogReply = 512 << 10

// serveLogs answers log requests for the node's pods.
func (a *Agent) serveLogs(ctx context.Context) (func(), error) {
	subj := messaging.NodeSubject(a.cfg.NodeName, messaging.NodeVerbLogs)
	sub, err := a.nc.Subscribe(subj, func(m *nats.Msg) {
		go a.handleLogs(ctx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("serve logs on %s: %w", subj, err)
	}
	return func() { sub.Unsubscribe() }, nil
}

func replyChunk(m *nats.Msg, c client.LogsChunk) {
	raw, _ := json.Marshal(c)
	m.Respond(raw)
}

func (a *Agent) handleLogs(ctx context.Context, m *nats.Msg) {
	var req client.LogsRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		replyChunk(m, client.LogsChunk{EOF: true, Error: client.Errorf(client.CodeInvalid, "logs: decode request: %v", err)})
		return
	}
	src, serr := a.logSource(req)
	if serr != nil {
		replyChunk(m, client.LogsChunk{EOF: true, Error: serr})
		return
	}
	opts := logfile.ReadOptions{TailLines: req.TailLines, Timestamps: req.Timestamps}
	if !req.Follow || req.Inbox == "" {
		var buf bytes.Buffer
		if err := logfile.Read(ctx, src.path, opts, &buf); err != nil {
			replyChunk(m, client.LogsChunk{EOF: true, Error: client.Errorf(client.CodeInternal, "read log: %v", err)})
			return
		}
		data := buf.Bytes()
		if len(data) > maxLogReply {
			data = data[len(data)-maxLogReply:]
		}
		replyChunk(m, client.LogsChunk{Data: data, EOF: true})
		return
	}
	replyChunk(m, client.LogsChunk{})
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts.Follow = true
	opts.Stop = src.ended
	cw := &chunkWriter{ctx: fctx, nc: a.nc, inbox: req.Inbox}
	err := logfile.Read(fctx, src.path, opts, cw)
	if cw.err != nil || ctx.Err() != nil {
		return // the reader went away, or the agent stops
	}
	final := client.LogsChunk{EOF: true}
	if err != nil {
		final.Error = client.Errorf(client.CodeInternal, "read log: %v", err)
	}
	cw.send(final)
}

// logSource is the log file a request names and how to tell the container ended.
type logSource struct {
	path  string
	ended func() bool
}

func (a *Agent) logSource(req client.LogsRequest) (logSource, *client.StatusError) {
	w := a.worker(req.Namespace, req.Pod)
	if w == nil {
		return logSource{}, client.Errorf(client.CodeNotFound, "pod %q not found on node %s", req.Pod, a.cfg.NodeName)
	}
	pod := w.pod()
	name := req.Container
	if name == "" {
		if len(pod.Spec.Containers) == 0 {
			return logSource{}, client.Errorf(client.CodeInvalid, "pod %q has no containers", req.Pod)
		}
		name = pod.Spec.Containers[0].Name
	}
	found := false
	for _, c := range pod.Spec.Containers {
		found = found || c.Name == name
	}
	if !found {
		return logSource{}, client.Errorf(client.CodeInvalid, "container %s is not valid for pod %s", name, req.Pod)
	}
	w.mu.Lock()
	rc := w.rec.Containers[name].RestartCount
	w.mu.Unlock()
	if req.Previous {
		if rc == 0 {
			return logSource{}, client.Errorf(client.CodeInvalid, "previous terminated container %q in pod %q not found", name, req.Pod)
		}
		rc--
	}
	path := w.logPath(pod, name, rc)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return logSource{}, client.Errorf(client.CodeInvalid, "container %q in pod %q is waiting to start", name, req.Pod)
	}
	ended := func() bool {
		if req.Previous || a.worker(req.Namespace, req.Pod) != w {
			return true
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.rec.Containers[name].RestartCount != rc {
			return true
		}
		if st := w.rec.Status; st != nil {
			for _, cs := range st.ContainerStatuses {
				if cs.Name == name && cs.State.Terminated != nil {
					return true
				}
			}
		}
		return false
	}
	return logSource{path: path, ended: ended}, nil
}

// chunkWriter sends what it is given as LogsChunk requests to an inbox and
// fails once nobody answers there.
type chunkWriter struct {
	ctx   context.Context
	nc    *nats.Conn
	inbox string
	err   error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += maxLogReply {
		end := min(off+maxLogReply, len(p))
		if err := c.send(client.LogsChunk{Data: p[off:end]}); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (c *chunkWriter) send(chunk client.LogsChunk) error {
	if c.err != nil {
		return c.err
	}
	raw, _ := json.Marshal(chunk)
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	if _, err := c.nc.RequestWithContext(ctx, c.inbox, raw); err != nil {
		c.err = fmt.Errorf("send log chunk: %w", err)
		return c.err
	}
	return nil
}
