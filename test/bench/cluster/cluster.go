// Package cluster holds the start-up checks the benchmark harnesses share
// once their control plane and agent processes run (see package proc). Not
// under test/bench/internal/ because test/peers uses it too.
package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/test/bench/proc"
)

// NodeReady returns nil when node name reports the condition Ready=True,
// an error saying what is missing otherwise. Poll it with proc.Poll.
func NodeReady(ctx context.Context, c *client.Client, name string) error {
	obj, err := c.Get(ctx, "nodes", "", name)
	if err != nil {
		return fmt.Errorf("get node %s: %w", name, err)
	}
	n, ok := obj.(*manifests.Node)
	if !ok {
		return fmt.Errorf("get node %s: got %T, not a Node", name, obj)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == manifests.NodeReady && c.Status == manifests.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("node %s not Ready", name)
}

// StartControlPlane starts bin/edge-controlplane in dev mode on a free
// loopback port, its data in dir/cp and its log in dir/cp.log, and waits,
// polling the log every interval, for the nats:// URL it prints.
func StartControlPlane(ctx context.Context, bin, dir string, every time.Duration) (*proc.Daemon, string, error) {
	cp, err := proc.Start(filepath.Join(dir, "cp.log"), nil, filepath.Join(bin, "edge-controlplane"),
		"--data-dir", filepath.Join(dir, "cp"), "--listen", "127.0.0.1:0", "--dev")
	if err != nil {
		return nil, "", err
	}
	url, err := proc.WaitURL(ctx, cp, every)
	if err != nil {
		cp.Stop()
		return nil, "", err
	}
	return cp, url, nil
}

// StartAgent starts bin/edge-agent as node name against url, its data in
// dir/agent and its log in dir/agent.log, with a heartbeat every 10 s and
// the extra arguments after. It does not wait: poll NodeReady for that.
func StartAgent(bin, dir, url, name string, extra ...string) (*proc.Daemon, error) {
	args := append([]string{"--server", url, "--node-name", name, "--data-dir", filepath.Join(dir, "agent"), "--heartbeat-interval", "10s"}, extra...)
	return proc.Start(filepath.Join(dir, "agent.log"), nil, filepath.Join(bin, "edge-agent"), args...)
}

// PodsRunning returns nil when at least want pods of namespace ns that
// match selector are Running, an error with the count otherwise. Poll it
// with proc.Poll.
func PodsRunning(ctx context.Context, c *client.Client, ns, selector string, want int) error {
	items, _, err := c.List(ctx, "pods", ns, selector)
	if err != nil {
		return fmt.Errorf("list pods %s: %w", selector, err)
	}
	n := 0
	for _, o := range items {
		if p, ok := o.(*manifests.Pod); ok && p.Status.Phase == manifests.PodRunning {
			n++
		}
	}
	if n < want {
		return fmt.Errorf("%d/%d pods Running", n, want)
	}
	return nil
}
