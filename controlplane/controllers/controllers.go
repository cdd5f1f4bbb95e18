// Package controllers wires the control plane's reconcile loops together:
// the informers, the scheduler, the assignment publisher, the node
// lifecycle controller and event garbage collection.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/assign"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/nodes"
	"github.com/edgeorch/edgeorch/controlplane/scheduler"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// Options tune the controllers. Zero values take the defaults.
type Options struct {
	// NodeGrace is how long a node stays Ready without a heartbeat
	// (nodes.DefaultGrace; env EDGE_NODE_GRACE overrides the default).
	NodeGrace time.Duration
	// EventTTL is how long events are kept (events.DefaultTTL).
	EventTTL time.Duration
}

// DefaultOptions reads the defaults, with EDGE_NODE_GRACE (a Go duration,
// e.g. "2s") overriding the node grace period.
func DefaultOptions() (Options, error) {
	opts := Options{NodeGrace: nodes.DefaultGrace, EventTTL: events.DefaultTTL}
	if v := os.Getenv("EDGE_NODE_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return opts, fmt.Errorf("EDGE_NODE_GRACE=%q: want a positive duration such as 40s", v)
		}
		opts.NodeGrace = d
	}
	return opts, nil
}

// Run runs every controller with DefaultOptions until ctx is done. nc is
// the control plane's connection (kept for leader election and metrics).
func Run(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error {
	opts, err := DefaultOptions()
	if err != nil {
		return err
	}
	return RunWithOptions(ctx, st, b, opts)
}

// RunWithOptions runs every controller until ctx is done. A controller
// that stops with an error before that is restarted after a pause; the
// errors are returned, joined, once ctx is done.
func RunWithOptions(ctx context.Context, st *store.Store, b *messaging.Buckets, opts Options) error {
	pods := controller.NewInformer(st, "pods")
	nodeInf := controller.NewInformer(st, "nodes")
	schedRec := events.NewRecorder(st, events.Options{Component: scheduler.Name, TTL: opts.EventTTL})
	nodeRec := events.NewRecorder(st, events.Options{Component: "node-controller", TTL: opts.EventTTL})

	sched := scheduler.NewController(st, pods, nodeInf, schedRec)
	pods.AddHandler(sched.PodChanged)
	nodeInf.AddHandler(sched.NodeChanged)

	asg := assign.New(b.Assignments, pods)
	pods.AddHandler(asg.PodChanged)

	life := nodes.New(st, nodeInf, nodeRec, nodes.Options{Grace: opts.NodeGrace})
	nodeInf.AddHandler(life.NodeChanged)

	both := func(ctx context.Context) error {
		if err := pods.WaitForSync(ctx); err != nil {
			return err
		}
		return nodeInf.WaitForSync(ctx)
	}
	logErr := func(err error) { slog.WarnContext(ctx, "event garbage collection", "err", err) }
	parts := map[string]func(context.Context) error{
		"pod informer":  pods.Run,
		"node informer": nodeInf.Run,
		"scheduler": func(ctx context.Context) error {
			if err := both(ctx); err != nil {
				return nil // ctx done
			}
			sched.Run(ctx)
			return nil
		},
		"assignments": func(ctx context.Context) error { return asg.Run(ctx, pods.WaitForSync) },
		"node lifecycle": func(ctx context.Context) error {
			return life.Run(ctx, b.Leases, nodeInf.WaitForSync)
		},
		"event gc": func(ctx context.Context) error {
			schedRec.RunGC(ctx, 0, logErr) // one GC covers every recorder's events
			return nil
		},
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for name, run := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := run(ctx)
				if err == nil || ctx.Err() != nil {
					return
				}
				err = fmt.Errorf("%s: %w", name, err)
				slog.ErrorContext(ctx, "controller stopped, restarting", "controller", name, "err", err)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
