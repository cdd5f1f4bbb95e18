package edgectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

// prepullParallel bounds the requests in flight at once.
const prepullParallel = 32

type prepullOptions struct {
	*options
	selector string
	runtime  string
	timeout  time.Duration
}

func newPrepullCmd(o *options) *cobra.Command {
	p := &prepullOptions{options: o}
	cmd := &cobra.Command{
		Use:   "prepull IMAGE [--selector k=v] [--runtime wasm|oci]",
		Short: "Ask nodes to fetch a module or image into their caches ahead of a rollout",
		Long: `Ask every node matching the selector to fetch IMAGE (a module pushed with
edgectl push, a wasm module in a registry, or an OCI image) into its cache, so
that a later rollout starts pods without a download. Prints one line per node:
the digest pulled, the error, or "unreachable" for a node that is offline.
Exits 1 unless every node pulled.`,
		Example: `  edgectl prepull hello:v2 --selector site=berlin
  edgectl prepull registry.example.com/app:1.4 --runtime oci`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf(cmd, "expected exactly one IMAGE argument, got %d", len(args))
			}
			if p.runtime != "wasm" && p.runtime != "oci" {
				return usageErrorf(cmd, "--runtime must be wasm or oci, not %q", p.runtime)
			}
			if p.timeout <= 0 {
				return usageErrorf(cmd, "--timeout must be positive")
			}
			return p.run(cmd.Context(), args[0])
		},
	}
	f := cmd.Flags()
	f.StringVarP(&p.selector, "selector", "l", "", "label selector of the nodes (default: every node)")
	f.StringVar(&p.runtime, "runtime", "wasm", "runtime the image is for: wasm or oci")
	f.DurationVar(&p.timeout, "timeout", 5*time.Minute, "how long one node may take to pull")
	return cmd
}

// prepullResult is one node's outcome.
type prepullResult struct {
	node        string
	digest      string
	err         string
	unreachable bool
}

func (p *prepullOptions) run(ctx context.Context, image string) error {
	cl, err := p.client(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := p.reqCtx(ctx)
	objs, _, err := cl.List(rctx, "nodes", "", p.selector)
	cancel()
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return fmt.Errorf("no nodes match selector %q", p.selector)
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		names = append(names, o.GetObjectMeta().Name)
	}
	slices.Sort(names)
	req, err := json.Marshal(client.PrepullRequest{Image: image, Runtime: p.runtime})
	if err != nil {
		return fmt.Errorf("prepull: encode request: %w", err)
	}
	results := make([]prepullResult, len(names))
	sem := make(chan struct{}, prepullParallel)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = prepullNode(ctx, cl.Conn(), name, req, p.timeout)
		})
	}
	wg.Wait()
	failed, unreachable := 0, 0
	for _, r := range results {
		switch {
		case r.unreachable:
			unreachable++
			fmt.Fprintf(p.streams.Out, "node/%s unreachable\n", r.node)
		case r.err != "":
			failed++
			fmt.Fprintf(p.streams.Out, "node/%s error: %s\n", r.node, r.err)
		default:
			fmt.Fprintf(p.streams.Out, "node/%s pulled %s\n", r.node, r.digest)
		}
	}
	if failed+unreachable > 0 {
		return fmt.Errorf("prepull %s: %d of %d nodes did not pull it (%d failed, %d unreachable)",
			image, failed+unreachable, len(names), failed, unreachable)
	}
	return nil
}

// prepullNode asks one node's agent to pull. No responder (the agent is
// not connected) or no answer within timeout means unreachable.
func prepullNode(ctx context.Context, nc *nats.Conn, node string, req []byte, timeout time.Duration) prepullResult {
	res := prepullResult{node: node}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, messaging.NodeSubject(node, messaging.NodeVerbPrepull), req)
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		res.unreachable = true
		return res
	case err != nil:
		res.err = err.Error()
		return res
	}
	var reply client.PrepullReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		res.err = fmt.Sprintf("decode reply: %v", err)
		return res
	}
	res.digest, res.err = reply.Digest, reply.Error
	if res.err == "" && res.digest == "" {
		res.err = "empty reply"
	}
	return res
}
