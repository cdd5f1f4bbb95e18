package edgectl

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

type logsOptions struct {
	*options
	container  string
	follow     bool
	tail       int
	timestamps bool
	previous   bool
	selector   string
	prefix     bool
	maxStreams int

	outMu sync.Mutex // whole lines of several pods' streams to streams.Out
}

func newLogsCmd(o *options) *cobra.Command {
	l := &logsOptions{options: o}
	cmd := &cobra.Command{
		Use:   "logs (POD | -l SELECTOR) [-c CONTAINER] [-f]",
		Short: "Print the output of a container in a pod, or in every pod a selector matches",
		Example: `  edgectl logs hello
  edgectl logs -f hello -c hello --tail 20
  # every replica, each line prefixed with [pod/NAME/CONTAINER]
  edgectl logs -l app=hello -f`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if l.tail < -1 {
				return usageErrorf(cmd, "--tail must be -1 (all) or a line count")
			}
			if !cmd.Flags().Changed("prefix") {
				l.prefix = l.selector != ""
			}
			if l.selector != "" {
				if len(args) != 0 {
					return usageErrorf(cmd, "only one of a POD argument or -l SELECTOR, not both")
				}
				if _, err := manifests.ParseSelector(l.selector); err != nil {
					return usageErrorf(cmd, "-l %q: %v", l.selector, err)
				}
				if l.maxStreams < 1 {
					return usageErrorf(cmd, "--max-log-requests must be at least 1")
				}
				return l.runSelector(cmd.Context())
			}
			if len(args) != 1 {
				return usageErrorf(cmd, "expected exactly one POD argument or -l SELECTOR, got %d arguments", len(args))
			}
			name := args[0]
			if kind, n, ok := strings.Cut(name, "/"); ok {
				k, err := manifests.KindForResource(kind)
				if err != nil || k.Kind != "Pod" {
					return usageErrorf(cmd, "logs supports pods only, not %q", kind)
				}
				name = n
			}
			return l.run(cmd.Context(), name)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&l.container, "container", "c", "", "container name (default: the only or first container)")
	f.BoolVarP(&l.follow, "follow", "f", false, "stream new output until the container ends or Ctrl-C")
	f.IntVar(&l.tail, "tail", -1, "number of most recent lines to show (-1 = all)")
	f.BoolVar(&l.timestamps, "timestamps", false, "prefix each line with its timestamp")
	f.BoolVarP(&l.previous, "previous", "p", false, "the output of the previous, ended instance of the container")
	f.StringVarP(&l.selector, "selector", "l", "", "logs of every pod this label selector matches, e.g. app=hello")
	f.BoolVar(&l.prefix, "prefix", false, "prefix each line with [pod/NAME/CONTAINER] (default true with -l)")
	f.IntVar(&l.maxStreams, "max-log-requests", 5, "with -l -f: the most pods followed at once")
	return cmd
}

func (l *logsOptions) run(ctx context.Context, name string) error {
	cl, err := l.client(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := l.reqCtx(ctx)
	obj, err := cl.Get(rctx, "pods", l.namespace, name)
	cancel()
	if err != nil {
		return err
	}
	pod, ok := obj.(*manifests.Pod)
	if !ok {
		return fmt.Errorf("pods %q: got a %T", name, obj)
	}
	return l.podLogs(ctx, cl.Conn(), pod)
}

// runSelector prints the logs of every pod -l matches: one after the other,
// or with -f all at once, whole lines interleaved.
func (l *logsOptions) runSelector(ctx context.Context) error {
	cl, err := l.client(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := l.reqCtx(ctx)
	objs, _, err := cl.List(rctx, "pods", l.listNamespace(), l.selector)
	cancel()
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	var pods []*manifests.Pod
	for _, obj := range objs {
		if p, ok := obj.(*manifests.Pod); ok {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		if l.allNamespaces {
			fmt.Fprintln(l.streams.ErrOut, "No resources found")
		} else {
			fmt.Fprintf(l.streams.ErrOut, "No resources found in %s namespace.\n", l.namespace)
		}
		return nil
	}
	slices.SortFunc(pods, func(a, b *manifests.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	if l.follow && len(pods) > l.maxStreams {
		return fmt.Errorf("you are attempting to follow %d log streams, but maximum allowed concurrency is %d, use --max-log-requests to increase the limit", len(pods), l.maxStreams)
	}
	nc := cl.Conn()
	var failed atomic.Int32
	one := func(pod *manifests.Pod) {
		if err := l.podLogs(ctx, nc, pod); err != nil {
			// At once: with -f the other streams may go on for long.
			failed.Add(1)
			l.outMu.Lock()
			fmt.Fprintf(l.streams.ErrOut, "error: pod/%s: %v\n", pod.Name, err)
			l.outMu.Unlock()
		}
	}
	if l.follow {
		var wg sync.WaitGroup
		for _, pod := range pods {
			wg.Go(func() { one(pod) })
		}
		wg.Wait()
	} else {
		for _, pod := range pods {
			one(pod)
		}
	}
	if failed := failed.Load(); failed > 0 {
		return fmt.Errorf("no logs from %d of %d pods", failed, len(pods))
	}
	return nil
}

// podLogs prints the logs of one pod, line by line with a prefix when
// --prefix or -l asks for it.
func (l *logsOptions) podLogs(ctx context.Context, nc *nats.Conn, pod *manifests.Pod) error {
	container, err := l.pickContainer(pod)
	if err != nil {
		return err
	}
	node := pod.Spec.NodeName
	if node == "" {
		return fmt.Errorf("pod %q is not scheduled to a node yet", pod.Name)
	}
	req := client.LogsRequest{
		Namespace:  pod.Namespace,
		Pod:        pod.Name,
		Container:  container,
		Follow:     l.follow,
		Timestamps: l.timestamps,
		Previous:   l.previous,
	}
	if l.tail >= 0 {
		req.TailLines = l.tail
	}
	var out io.Writer = l.streams.Out
	if l.prefix || l.selector != "" {
		// Several streams share Out: whole lines only.
		lw := &lineWriter{mu: &l.outMu, out: l.streams.Out}
		if l.prefix {
			lw.prefix = []byte(fmt.Sprintf("[pod/%s/%s] ", pod.Name, container))
		}
		defer lw.flush()
		out = lw
	}
	if !l.follow {
		chunk, err := l.request(ctx, nc, node, req)
		if err != nil {
			return err
		}
		_, err = out.Write(chunk.Data)
		return err
	}
	return l.followLogs(ctx, nc, node, req, out)
}

// lineWriter writes whole lines, each after prefix, to out under mu; a
// partial line waits for its end (or flush).
type lineWriter struct {
	mu      *sync.Mutex
	out     io.Writer
	prefix  []byte
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	end := bytes.LastIndexByte(w.partial, '\n')
	if end < 0 {
		return len(p), nil
	}
	err := w.emit(w.partial[:end+1])
	w.partial = append(w.partial[:0], w.partial[end+1:]...)
	return len(p), err
}

// flush writes a last line that has no newline, ending it.
func (w *lineWriter) flush() error {
	if len(w.partial) == 0 {
		return nil
	}
	err := w.emit(append(w.partial, '\n'))
	w.partial = nil
	return err
}

func (w *lineWriter) emit(lines []byte) error {
	var buf bytes.Buffer
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n')
		buf.Write(w.prefix)
		buf.Write(lines[:i+1])
		lines = lines[i+1:]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.out.Write(buf.Bytes())
	return err
}

// pickContainer validates -c or defaults to the only (or first) container.
func (l *logsOptions) pickContainer(pod *manifests.Pod) (string, error) {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if l.container != "" {
		for _, n := range names {
			if n == l.container {
				return n, nil
			}
		}
		return "", fmt.Errorf("container %s is not valid for pod %s", l.container, pod.Name)
	}
	if len(pod.Spec.Containers) == 0 {
		return "", fmt.Errorf("pod %s has no containers", pod.Name)
	}
	first := pod.Spec.Containers[0].Name
	if len(names) > 1 && l.selector == "" {
		fmt.Fprintf(l.streams.ErrOut, "Defaulted container %q out of: %s\n", first, strings.Join(names, ", "))
	}
	return first, nil
}

// request asks the node's agent for logs and decodes its first chunk.
func (l *logsOptions) request(ctx context.Context, nc *nats.Conn, node string, req client.LogsRequest) (client.LogsChunk, error) {
	var chunk client.LogsChunk
	body, err := json.Marshal(req)
	if err != nil {
		return chunk, fmt.Errorf("encode logs request: %w", err)
	}
	rctx, cancel := l.reqCtx(ctx)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, messaging.NodeSubject(node, messaging.NodeVerbLogs), body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return chunk, fmt.Errorf("node %q is not reachable", node)
		}
		return chunk, fmt.Errorf("logs of %s/%s from node %q: %w", req.Namespace, req.Pod, node, err)
	}
	if err := decodeChunk(msg.Data, &chunk); err != nil {
		return chunk, err
	}
	return chunk, nil
}

func decodeChunk(data []byte, chunk *client.LogsChunk) error {
	if err := json.Unmarshal(data, chunk); err != nil {
		return fmt.Errorf("decode log chunk: %w", err)
	}
	if chunk.Error != nil {
		return chunk.Error
	}
	return nil
}

// followLogs subscribes an inbox the agent sends further chunks to, answers
// each chunk so the agent keeps going, and stops at EOF or when ctx ends.
func (l *logsOptions) followLogs(ctx context.Context, nc *nats.Conn, node string, req client.LogsRequest, out io.Writer) error {
	inbox := nc.NewInbox()
	msgs := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return fmt.Errorf("subscribe to log inbox: %w", err)
	}
	defer sub.Unsubscribe()
	req.Inbox = inbox
	first, err := l.request(ctx, nc, node, req)
	if err != nil {
		return err
	}
	if _, err := out.Write(first.Data); err != nil {
		return err
	}
	if first.EOF {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			var chunk client.LogsChunk
			err := decodeChunk(m.Data, &chunk)
			if err == nil {
				_, err = out.Write(chunk.Data)
			}
			if m.Reply != "" {
				m.Respond(nil)
			}
			if err != nil {
				return err
			}
			if chunk.EOF {
				return nil
			}
		}
	}
}
