// Package sim runs a simulated fleet in one process: a control plane
// (embedded NATS with JetStream, the API and the controllers) and N edge
// agents, each with its own NATS connection, data directory and bbolt
// file, running pods on runtime/fake. The fake runtime is registered under
// the handler names "fake", "oci" and "wasm", so ordinary manifests
// schedule; pods in simulations use images such as "fake://run".
//
// StopNode cuts a node's link to the control plane as a device going
// offline does: its agent keeps running its pods, its heartbeats stop, and
// StartNode restores the link.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
	"github.com/nats-io/nats.go"
)

// Handlers are the runtime handler names under which every simulated node
// registers a fake runtime.
var Handlers = []string{fake.HandlerName, manifests.RuntimeOCI, manifests.RuntimeWasm}

// Options configure a simulated cluster. Zero values take the defaults.
type Options struct {
	// Nodes is the number of simulated nodes, named NodeName(FirstNode+i).
	Nodes int
	// FirstNode numbers the nodes from FirstNode (0): fleets of several
	// processes against one control plane each take a range.
	FirstNode int
	// Labels, if set, gives node i its extra labels.
	Labels func(i int) map[string]string
	// HeartbeatInterval of the agents (200ms).
	HeartbeatInterval time.Duration
	// NodeGrace is how long a node stays Ready without a heartbeat (2s).
	NodeGrace time.Duration
	// Dir holds the control plane's and the agents' data; New makes (and
	// Close removes) a temporary directory when empty, Start uses t.TempDir.
	Dir string
	// Logger receives the control plane's and agents' logs; discarded if nil.
	Logger *slog.Logger
	// SyncAlways makes JetStream fsync every write, as the real control
	// plane does by default (off: simulations rarely need it).
	SyncAlways bool
	// NoWait makes New return without waiting for every node to be Ready.
	NoWait bool
	// Agent, if set, adjusts node i's agent configuration before it starts.
	Agent func(i int, cfg *edgeagent.Config)
	// ControllerOptions tune the controllers (NodeGrace above wins over
	// its NodeGrace).
	ControllerOptions controllers.Options
	// Controllers, if set, replaces the controllers the control plane runs
	// (default: controllers.RunWithOptions with ControllerOptions).
	Controllers func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error
	// URL, if set, is the NATS URL of a control plane running elsewhere
	// (e.g. in another process, to measure it apart from the fleet): New
	// starts only the agents, connected to it.
	URL string
	// StartConcurrency is how many agents start at once (8).
	StartConcurrency int
}

func (o *Options) defaults() {
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 200 * time.Millisecond
	}
	if o.NodeGrace <= 0 {
		o.NodeGrace = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StartConcurrency <= 0 {
		o.StartConcurrency = 8
	}
	if o.Controllers == nil {
		co := o.ControllerOptions
		co.NodeGrace = o.NodeGrace
		o.Controllers = func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error {
			return controllers.RunWithOptions(ctx, st, b, co)
		}
	}
}

// NodeName is the name of simulated node i.
func NodeName(i int) string { return fmt.Sprintf("sim-node-%d", i) }

// Cluster is a running simulated cluster.
type Cluster struct {
	// Client talks to the control plane's API.
	Client *client.Client
	// URL is the control plane's NATS URL.
	URL string

	opts    Options
	dir     string
	ownDir  bool
	cancel  context.CancelFunc
	cpDone  chan error
	nc      *nats.Conn
	mu      sync.Mutex
	nodes   []*Node
	closing bool
}

// Node is one simulated node.
type Node struct {
	// Name is the node's name.
	Name string
	// Runtimes are the node's fake runtimes by handler name; they outlive
	// StopNode, as the workloads of an offline device do.
	Runtimes map[string]*fake.Runtime

	link   *link
	cfg    edgeagent.Config
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

// Start starts a cluster for a test or benchmark, failing it on error and
// closing the cluster when it ends.
func Start(ctx context.Context, t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("start simulated cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close simulated cluster: %v", err)
		}
	})
	return c
}

// New starts a control plane and opts.Nodes agents and, unless opts.NoWait,
// waits until every node is Ready (bounded by ctx).
func New(ctx context.Context, opts Options) (_ *Cluster, err error) {
	opts.defaults()
	c := &Cluster{opts: opts, dir: opts.Dir, cpDone: make(chan error, 1)}
	if c.dir == "" {
		c.dir, err = os.MkdirTemp("", "edge-sim-")
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		c.ownDir = true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if opts.URL != "" {
		c.URL = opts.URL
	} else if err := c.startControlPlane(ctx); err != nil {
		return nil, err
	}
	c.nc, err = messaging.Connect(ctx, c.URL, "sim-client")
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	c.Client = client.New(c.nc)
	// The API's subscriptions may reach the server just after ready.
	if err := poll(ctx, func() error {
		_, err := c.Client.Get(ctx, "namespaces", "", "default")
		return err
	}); err != nil {
		return nil, err
	}
	if err := c.startNodes(opts.Nodes); err != nil {
		return nil, err
	}
	if !opts.NoWait {
		if err := c.WaitReady(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	cpCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	ready := make(chan string, 1)
	go func() {
		c.cpDone <- controlplane.Run(cpCtx, controlplane.Config{
			DataDir:        filepath.Join(c.dir, "controlplane"),
			Listen:         "127.0.0.1:0",
			SyncAlways:     c.opts.SyncAlways,
			Logger:         c.opts.Logger.With("component", "controlplane"),
			RunControllers: c.opts.Controllers,
		}, func(url string) { ready <- url })
	}()
	select {
	case c.URL = <-ready:
		return nil
	case err := <-c.cpDone:
		c.cpDone <- err
		return fmt.Errorf("sim: control plane: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("sim: control plane: %w", ctx.Err())
	}
}

// startNodes starts nodes 0..n-1, StartConcurrency at a time.
func (c *Cluster) startNodes(n int) error {
	nodes := make([]*Node, n)
	idx := make(chan int)
	errs := make(chan error, c.opts.StartConcurrency)
	var wg sync.WaitGroup
	for range c.opts.StartConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				node, err := c.startNode(i)
				if err != nil {
					errs <- err
					return
				}
				nodes[i] = node
			}
		}()
	}
	var err error
feed:
	for i := range n {
		select {
		case idx <- i:
		case err = <-errs:
			break feed
		}
	}
	close(idx)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, node := range nodes {
		if node != nil { // Close stops the ones that started
			c.nodes = append(c.nodes, node)
		}
	}
	return err
}

func (c *Cluster) startNode(i int) (*Node, error) {
	g := c.opts.FirstNode + i // the node's number in the fleet
	name := NodeName(g)
	n := &Node{Name: name, Runtimes: map[string]*fake.Runtime{}, link: &link{}}
	rts := map[string]runtime.Runtime{}
	for _, h := range Handlers {
		rt := fake.New(h)
		n.Runtimes[h] = rt
		rts[h] = rt
	}
	labels := map[string]string{}
	if c.opts.Labels != nil {
		maps.Copy(labels, c.opts.Labels(g))
	}
	cfg := edgeagent.Config{
		NodeName:          name,
		DataDir:           filepath.Join(c.dir, "nodes", name),
		Labels:            labels,
		Address:           fmt.Sprintf("10.%d.%d.%d", 200+g/62500, g/250%250, g%250+1),
		HeartbeatInterval: c.opts.HeartbeatInterval,
		Runtimes:          rts,
		Logger:            c.opts.Logger.With("component", "agent"),
		BackoffBase:       100 * time.Millisecond,
		BackoffMax:        2 * time.Second,
		PollInterval:      100 * time.Millisecond,
		PassImages:        true,
	}
	if c.opts.Agent != nil {
		c.opts.Agent(g, &cfg)
	}
	n.cfg = cfg
	if err := c.runAgent(n); err != nil {
		return nil, err
	}
	return n, nil
}

// runAgent connects n's agent through its link and starts it.
func (c *Cluster) runAgent(n *Node) error {
	nc, err := nats.Connect(c.URL,
		nats.Name("sim-agent "+n.Name),
		nats.SetCustomDialer(n.link),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 0),
		nats.RetryOnFailedConnect(true),
	)
	if err != nil {
		return fmt.Errorf("sim: node %s: connect: %w", n.Name, err)
	}
	actx, cancel := context.WithCancel(context.Background())
	n.nc, n.cancel, n.done = nc, cancel, make(chan error, 1)
	go func(done chan<- error) { done <- edgeagent.Run(actx, nc, n.cfg) }(n.done)
	return nil
}

// stopAgent stops n's agent and closes its connection.
func (n *Node) stopAgent() error {
	n.cancel()
	err := <-n.done
	n.nc.Close()
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}

// RestartAgent stops node i's agent and starts it again with the same
// local state and runtimes, as after an agent crash or upgrade: the
// containers keep running and the new agent takes them over.
func (c *Cluster) RestartAgent(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return errors.New("sim: cluster closed")
	}
	n := c.nodes[i]
	if err := n.stopAgent(); err != nil {
		return err
	}
	return c.runAgent(n)
}

// AddNode starts one more node (a device joining the fleet) and returns
// its index; it does not wait for the node to be Ready.
func (c *Cluster) AddNode() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return 0, errors.New("sim: cluster closed")
	}
	i := len(c.nodes)
	n, err := c.startNode(i)
	if err != nil {
		return 0, err
	}
	c.nodes = append(c.nodes, n)
	return i, nil
}

// Nodes is the number of simulated nodes.
func (c *Cluster) Nodes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Node returns simulated node i.
func (c *Cluster) Node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// StopNode takes node i offline: its connection drops and cannot be made
// again until StartNode. The agent and its pods keep running.
func (c *Cluster) StopNode(i int) { c.Node(i).link.setDown(true) }

// StartNode brings node i back online; its agent reconnects and resyncs.
func (c *Cluster) StartNode(i int) { c.Node(i).link.setDown(false) }

// Running counts the running containers of the node over its runtimes.
func (n *Node) Running(ctx context.Context) (int, error) {
	ids, err := n.RunningIDs(ctx)
	return len(ids), err
}

// RunningIDs returns the IDs of the node's running containers, sorted.
func (n *Node) RunningIDs(ctx context.Context) ([]string, error) {
	var ids []string
	for h, rt := range n.Runtimes {
		cs, err := rt.ListContainers(ctx, runtime.ContainerFilter{})
		if err != nil {
			return nil, fmt.Errorf("node %s: list %s containers: %w", n.Name, h, err)
		}
		for _, s := range cs {
			if s.State == runtime.StateRunning {
				ids = append(ids, h+"://"+s.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// WaitReady waits until every simulated node is Ready (bounded by ctx).
func (c *Cluster) WaitReady(ctx context.Context) error {
	names := map[string]bool{}
	for i := range c.Nodes() {
		names[NodeName(c.opts.FirstNode+i)] = true
	}
	return poll(ctx, func() error {
		notReady, err := c.notReady(ctx, names)
		if err != nil {
			return err
		}
		if len(notReady) > 0 {
			return fmt.Errorf("%d of %d nodes not Ready (e.g. %s)", len(notReady), len(names), notReady[0])
		}
		return nil
	})
}

func (c *Cluster) notReady(ctx context.Context, names map[string]bool) ([]string, error) {
	objs, _, err := c.Client.List(ctx, "nodes", "", "")
	if err != nil {
		return nil, err
	}
	ready := map[string]bool{}
	for _, o := range objs {
		if n, ok := o.(*manifests.Node); ok && NodeIsReady(n) {
			ready[n.Name] = true
		}
	}
	var out []string
	for name := range names {
		if !ready[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

// NodeIsReady reports whether n's Ready condition is True.
func NodeIsReady(n *manifests.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == manifests.NodeReady {
			return cond.Status == manifests.ConditionTrue
		}
	}
	return false
}

// poll calls f every 20ms until it returns nil; when ctx is done it returns
// f's last error.
func poll(ctx context.Context, f func() error) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sim: %w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops the agents, then the control plane, and removes the data
// directory New made. It may be called more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	nodes := c.nodes
	c.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		n.cancel()
	}
	for _, n := range nodes {
		if err := n.stopAgent(); err != nil {
			errs = append(errs, err)
		}
		for h, rt := range n.Runtimes {
			if err := rt.Close(context.Background()); err != nil {
				errs = append(errs, fmt.Errorf("node %s: close %s runtime: %w", n.Name, h, err))
			}
		}
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.cancel != nil {
		c.cancel()
		if err := <-c.cpDone; err != nil {
			errs = append(errs, fmt.Errorf("control plane: %w", err))
		}
	}
	if c.ownDir {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// link is a node's network: a dialer that fails while the link is down,
// and closes the connections it made when it goes down.
type link struct {
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

var errLinkDown = errors.New("sim: link down")

// Dial implements nats.CustomDialer.
func (l *link) Dial(network, address string) (net.Conn, error) {
	l.mu.Lock()
	down := l.down
	l.mu.Unlock()
	if down {
		return nil, errLinkDown
	}
	conn, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial(network, address)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		conn.Close()
		return nil, errLinkDown
	}
	if l.conns == nil {
		l.conns = map[net.Conn]struct{}{}
	}
	tc := &trackedConn{Conn: conn, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *link) setDown(down bool) {
	l.mu.Lock()
	l.down = down
	var conns []net.Conn
	if down {
		for c := range l.conns {
			conns = append(conns, c)
		}
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l *link
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
