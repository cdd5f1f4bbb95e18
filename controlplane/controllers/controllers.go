// Package controllers wires the control plane's reconcile loops together:
// the informers, the scheduler, the assignment publisher, the node
// lifecycle controller and event garbage collection.
package controllers

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/assign"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/deployment"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/gc"
	"github.com/edgeorch/edgeorch/controlplane/leader"
	"github.com/edgeorch/edgeorch/controlplane/nodes"
	"github.com/edgeorch/edgeorch/controlplane/replicaset"
	"github.com/edgeorch/edgeorch/controlplane/rollout"
	"github.com/edgeorch/edgeorch/controlplane/scheduler"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// Options tune the controllers. Zero values take the defaults.
type Options struct {
	// NodeGrace is how long a node stays Ready without a heartbeat
	// (nodes.DefaultGrace; env EDGE_NODE_GRACE overrides the default).
	NodeGrace time.Duration
	// NodeUnreachableGrace is how long a node stays NotReady before it
	// is Unreachable (nodes.DefaultUnreachableGrace; env
	// EDGE_NODE_UNREACHABLE_GRACE overrides the default).
	NodeUnreachableGrace time.Duration
	// EventTTL is how long events are kept (events.DefaultTTL).
	EventTTL time.Duration
	// DisableLeaderElection runs the controllers at once, without
	// holding the leader lease (one control-plane process only).
	DisableLeaderElection bool
	// LeaderID names this process in the leader lease (host name, pid
	// and a random suffix when empty).
	LeaderID string
	// LeaderTTL is how long a leader that stopped renewing keeps the
	// lease (DefaultLeaderTTL).
	LeaderTTL time.Duration
	// JobBackoff is the delay before a Job replaces its first failed pod,
	// doubling per failure (job.DefaultBackoff, 10s).
	JobBackoff time.Duration
	// ClusterCIDR is the range node pod CIDRs are cut from
	// (ipam.DefaultClusterCIDR when empty).
	ClusterCIDR string
	// NodeCIDRMaskSize is the prefix length of one node's pod CIDR
	// (ipam.DefaultNodeMaskSize when 0).
	NodeCIDRMaskSize int
}

// DefaultLeaderTTL is the default LeaderTTL.
const DefaultLeaderTTL = 15 * time.Second

// LeaderLease is the name of the controllers' leader lease
// (messaging.LeaderKey(LeaderLease) in the leader bucket).
const LeaderLease = "controllers"

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
	opts.NodeUnreachableGrace = nodes.DefaultUnreachableGrace
	if v := os.Getenv("EDGE_NODE_UNREACHABLE_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return opts, fmt.Errorf("EDGE_NODE_UNREACHABLE_GRACE=%q: want a positive duration such as 5m", v)
		}
		opts.NodeUnreachableGrace = d
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

// RunWithOptions runs every controller while this process holds the
// controllers' leader lease, until ctx is done: several control-plane
// processes may run against one NATS, their API servers all serve, one
// runs the controllers. A leader that cannot renew the lease for
// LeaderTTL stops its controllers; another process takes over once the
// lease has not been renewed for LeaderTTL (at once when the leader
// stops cleanly). A controller that stops with an error is restarted
// after a pause; the errors are returned, joined, once ctx is done.
func RunWithOptions(ctx context.Context, st *store.Store, b *messaging.Buckets, opts Options) error {
	if opts.DisableLeaderElection {
		return runControllers(ctx, st, b, opts)
	}
	id := opts.LeaderID
	if id == "" {
		id = leaderID()
	}
	ttl := opts.LeaderTTL
	if ttl <= 0 {
		ttl = DefaultLeaderTTL
	}
	log := slog.With("lease", LeaderLease, "id", id)
	var (
		mu   sync.Mutex
		errs []error
	)
	err := leader.Elect(ctx, b.Leader, messaging.LeaderKey(LeaderLease), id, ttl, leader.Callbacks{
		OnStartedLeading: func(ctx context.Context) {
			log.InfoContext(ctx, "became leader: starting controllers")
			if err := runControllers(ctx, st, b, opts); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		},
		OnStoppedLeading: func() { log.Info("stopped leading: controllers stopped") },
		OnNewLeader: func(holder string) {
			if holder != id && holder != "" {
				log.Info("controllers led by another process", "leader", holder)
			}
		},
	})
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(append(errs, err)...)
}

// leaderID is host name, pid and a random suffix.
func leaderID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s_%d_%x", host, os.Getpid(), b)
}

// runControllers runs every controller until ctx is done.
func runControllers(ctx context.Context, st *store.Store, b *messaging.Buckets, opts Options) error {
	pods := controller.NewInformer(st, "pods")
	nodeInf := controller.NewInformer(st, "nodes")
	schedRec := events.NewRecorder(st, events.Options{Component: scheduler.Name, TTL: opts.EventTTL})
	nodeRec := events.NewRecorder(st, events.Options{Component: "node-controller", TTL: opts.EventTTL})

	sched := scheduler.NewController(st, pods, nodeInf, schedRec)
	pods.AddHandler(sched.PodChanged)
	nodeInf.AddHandler(sched.NodeChanged)

	asg := assign.New(b.Assignments, pods)
	pods.AddHandler(asg.PodChanged)

	life := nodes.New(st, nodeInf, nodeRec, nodes.Options{Grace: opts.NodeGrace, UnreachableGrace: opts.NodeUnreachableGrace, Pods: pods})
	nodeInf.AddHandler(life.NodeChanged)
	pods.AddHandler(life.PodChanged)

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
			return life.Run(ctx, nodeInf.WaitForSync, b.Heartbeats, b.Leases)
		},
		"event gc": func(ctx context.Context) error {
			schedRec.RunGC(ctx, 0, logErr) // one GC covers every recorder's events
			return nil
		},
	}
	dsInf, jobInf := addDaemonSetAndJob(parts, st, pods, nodeInf, opts)
	cjInf := addCronJob(parts, st, jobInf, opts)
	svcInf, epInf, err := addServiceControllers(parts, st, b, pods, nodeInf, opts)
	if err != nil {
		return err
	}
	shared := map[string]*controller.Informer{"pods": pods, "nodes": nodeInf, "daemonsets": dsInf, "jobs": jobInf, "cronjobs": cjInf, "services": svcInf, "endpoints": epInf}
	for r, inf := range addVolumeControllers(parts, st, pods, nodeInf, sched, opts) { // volumes.go
		shared[r] = inf
	}
	shared["horizontalpodautoscalers"] = addHPA(parts, st, b, pods, opts) // hpa.go
	addWorkloadControllers(st, opts, shared, parts)
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

// addWorkloadControllers adds the ReplicaSet and Deployment controllers
// and the garbage collector to parts, with informers for every kind but
// events (the given ones are shared).
func addWorkloadControllers(st *store.Store, opts Options, shared map[string]*controller.Informer, parts map[string]func(context.Context) error) {
	infs := map[string]*controller.Informer{}
	for _, k := range manifests.Kinds() {
		if k.Kind == "Event" {
			continue
		}
		if inf, ok := shared[k.Resource]; ok {
			infs[k.Resource] = inf
			continue
		}
		inf := controller.NewInformer(st, k.Resource)
		infs[k.Resource] = inf
		parts[k.Resource+" informer"] = inf.Run
	}
	pods, rsets, deploys := infs["pods"], infs["replicasets"], infs["deployments"]
	waitAll := func(ctx context.Context, list ...*controller.Informer) error {
		for _, inf := range list {
			if err := inf.WaitForSync(ctx); err != nil {
				return err
			}
		}
		return nil
	}

	rsc := replicaset.New(st, rsets, pods, events.NewRecorder(st, events.Options{Component: replicaset.Name, TTL: opts.EventTTL}))
	rsets.AddHandler(rsc.RSChanged)
	pods.AddHandler(rsc.PodChanged)
	parts["replicaset controller"] = func(ctx context.Context) error {
		if waitAll(ctx, rsets, pods) == nil {
			rsc.Run(ctx, 4)
		}
		return nil
	}

	dc := deployment.New(st, deploys, rsets, pods, events.NewRecorder(st, events.Options{Component: deployment.Name, TTL: opts.EventTTL}))
	deploys.AddHandler(dc.DeploymentChanged)
	rsets.AddHandler(dc.RSChanged)
	pods.AddHandler(dc.PodChanged)
	parts["deployment controller"] = func(ctx context.Context) error {
		if waitAll(ctx, deploys, rsets, pods) == nil {
			dc.Run(ctx, 4)
		}
		return nil
	}

	parts["rollout controller"] = rollout.Wire(st, infs, events.NewRecorder(st, events.Options{Component: rollout.Name, TTL: opts.EventTTL}))
	addStatefulSet(parts, st, infs, opts) // statefulset.go

	listers := map[string]gc.Lister{}
	var all []*controller.Informer
	for r, inf := range infs {
		listers[r] = inf
		all = append(all, inf)
	}
	collector := gc.New(st, listers)
	for r, inf := range infs {
		inf.AddHandler(collector.Handler(r))
	}
	parts["garbage collector"] = func(ctx context.Context) error {
		if waitAll(ctx, all...) == nil {
			collector.Run(ctx, 2)
		}
		return nil
	}
}
