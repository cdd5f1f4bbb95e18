package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/test/bench/cluster"
	"github.com/edgeorch/edgeorch/test/bench/proc"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nats-io/nats.go"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images/imagetest"
	"github.com/edgeorch/edgeorch/manifests"
)

// ours is edgeorch: edge-controlplane (--dev, loopback, random port) and
// one edge-agent, from cfg.bin.
type ours struct {
	cfg    config
	cp, ag *proc.Daemon
	nc     *nats.Conn
	c      *client.Client
}

func newOurs(cfg config) system { return &ours{cfg: cfg} }

func (o *ours) name() string { return "ours" }

func (o *ours) start(ctx context.Context, dir string) error {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	cp, url, err := cluster.StartControlPlane(wctx, o.cfg.bin, dir, 5*time.Millisecond)
	cancel()
	if err != nil {
		return err
	}
	o.cp = cp
	// The agent starts as soon as there is a URL to give it: a peer's
	// single binary starts its client at once too.
	o.ag, err = cluster.StartAgent(o.cfg.bin, dir, url, "peers")
	if err != nil {
		return err
	}
	if o.nc, err = nats.Connect(url); err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	o.c = client.New(o.nc)
	return proc.PollFor(ctx, time.Minute, 5*time.Millisecond, func() error {
		if err := o.ag.Exited(); err != nil {
			return err
		}
		return cluster.NodeReady(ctx, o.c, "peers")
	})
}

// panicTB lets the image builder of imagetest run outside a test.
type panicTB struct{ testing.TB }

func (panicTB) Helper()                        {}
func (panicTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

func (o *ours) prepare(ctx context.Context) error {
	if o.cfg.task == "container" {
		if _, err := exec.LookPath("runc"); err != nil {
			return fmt.Errorf("-task container needs runc: %w", err)
		}
		_, err := o.c.PushImage(ctx, "busybox:peers", imagetest.Busybox(panicTB{}, v1.Config{Cmd: []string{"sleep", "3600"}}))
		return err
	}
	f, err := os.Open(filepath.Join(o.cfg.wasmDir, "sleep.wasm"))
	if err != nil {
		return fmt.Errorf("module sleep: %w (run make wasm)", err)
	}
	defer f.Close()
	_, err = o.c.PushModule(ctx, "sleep:peers", f)
	return err
}

func (o *ours) pod(name, batch string) json.RawMessage {
	c := map[string]any{"name": "c", "image": "sleep:peers",
		"resources": map[string]any{"limits": map[string]any{"memory": "8Mi"}}}
	spec := map[string]any{"runtimeClassName": "wasm", "containers": []any{c}}
	if o.cfg.task == "container" {
		c["image"], c["imagePullPolicy"] = "busybox:peers", "IfNotPresent"
		c["resources"] = map[string]any{"limits": map[string]any{"memory": "32Mi"}}
		spec = map[string]any{"terminationGracePeriodSeconds": 0, "containers": []any{c}}
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "labels": map[string]string{"peers": batch}},
		"spec":     spec,
	})
	return b
}

func (o *ours) submit(ctx context.Context, batch string, names []string) error {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	events, err := o.c.Watch(wctx, "pods", "default", "peers="+batch)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, _, err := o.c.ApplyRaw(ctx, o.pod(n, batch), false); err != nil {
			return fmt.Errorf("apply pod %s: %w", n, err)
		}
	}
	running := map[string]bool{}
	for len(running) < len(names) {
		select {
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("watch ended with %d/%d running: %w", len(running), len(names), wctx.Err())
			}
			if p, ok := ev.Object.(*manifests.Pod); ok && p.Status.Phase == manifests.PodRunning {
				running[p.Name] = true
			}
		case <-wctx.Done():
			return fmt.Errorf("%d/%d running: %w", len(running), len(names), wctx.Err())
		}
	}
	return nil
}

func (o *ours) remove(ctx context.Context, batch string, names []string) error {
	for _, n := range names {
		if _, err := o.c.Delete(ctx, "pods", "default", n); err != nil {
			return fmt.Errorf("delete pod %s: %w", n, err)
		}
	}
	return proc.PollFor(ctx, 2*time.Minute, 50*time.Millisecond, func() error {
		items, _, err := o.c.List(ctx, "pods", "default", "peers="+batch)
		if err != nil {
			return err
		}
		if len(items) > 0 {
			return fmt.Errorf("%d pods left", len(items))
		}
		return nil
	})
}

func (o *ours) writeConfigs(ctx context.Context, prefix string, n int) error {
	for i := 0; i < n; i++ {
		cm := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s-%d"},"data":{"k":"v"}}`, prefix, i)
		if _, _, err := o.c.ApplyRaw(ctx, json.RawMessage(cm), false); err != nil {
			return fmt.Errorf("apply configmap %s-%d: %w", prefix, i, err)
		}
	}
	return nil
}

func (o *ours) usage() procSet {
	var s procSet
	for _, d := range []*proc.Daemon{o.cp, o.ag} {
		if d != nil {
			s.roots = append(s.roots, d.PID())
		}
	}
	return s
}

func (o *ours) stop() {
	if o.nc != nil {
		o.nc.Close()
	}
	// Containers outlive the agent by design: kill what is left of it.
	left := o.usage().pids()
	o.ag.Stop()
	o.cp.Stop()
	killPIDs(left)
}
