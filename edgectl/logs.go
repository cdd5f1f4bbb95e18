package edgectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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
}

func newLogsCmd(o *options) *cobra.Command {
	l := &logsOptions{options: o}
	cmd := &cobra.Command{
		Use:   "logs POD [-c CONTAINER] [-f]",
		Short: "Print the output of a container in a pod",
		Example: `  edgectl logs hello
  edgectl logs -f hello -c hello --tail 20`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf(cmd, "expected exactly one POD argument, got %d", len(args))
			}
			name := args[0]
			if kind, n, ok := strings.Cut(name, "/"); ok {
				k, err := manifests.KindForResource(kind)
				if err != nil || k.Kind != "Pod" {
					return usageErrorf(cmd, "logs supports pods only, not %q", kind)
				}
				name = n
			}
			if l.tail < -1 {
				return usageErrorf(cmd, "--tail must be -1 (all) or a line count")
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
	container, err := l.pickContainer(pod)
	if err != nil {
		return err
	}
	node := pod.Spec.NodeName
	if node == "" {
		return fmt.Errorf("pod %q is not scheduled to a node yet", name)
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
	nc := cl.Conn()
	if !l.follow {
		chunk, err := l.request(ctx, nc, node, req)
		if err != nil {
			return err
		}
		_, err = l.streams.Out.Write(chunk.Data)
		return err
	}
	return l.followLogs(ctx, nc, node, req)
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
	if len(names) > 1 {
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
func (l *logsOptions) followLogs(ctx context.Context, nc *nats.Conn, node string, req client.LogsRequest) error {
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
	if _, err := l.streams.Out.Write(first.Data); err != nil {
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
				_, err = l.streams.Out.Write(chunk.Data)
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
