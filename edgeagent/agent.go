// Package edgeagent is the node agent: it registers its Node, heartbeats,
// watches the pods assigned to it, runs them through a runtime.Runtime,
// reports their status and serves their logs. Its local state (bbolt) lets
// it start its pods again before it reaches the control plane.
package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/podnet"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Version is reported as the node's kubeletVersion (edge-agent/<Version>).
var Version = "v0.1.0"

// Config configures an agent.
type Config struct {
	NodeName string
	DataDir  string
	// Labels are added to the node's own labels (hostname, os, arch, runtimes).
	Labels map[string]string
	// Address is the node's InternalIP, also the IP of its wasm pods. Default:
	// the first non-loopback IPv4 address, else 127.0.0.1.
	Address string
	// HeartbeatInterval is how often the lease is renewed (10s).
	HeartbeatInterval time.Duration
	// Runtimes maps a runtime handler name ("wasm") to its runtime.
	Runtimes map[string]runtime.Runtime
	Logger   *slog.Logger
	// BackoffBase and BackoffMax bound the restart back-off (10s, 5m).
	BackoffBase, BackoffMax time.Duration
	// PollInterval is how often pod workers look at their containers (100ms).
	PollInterval time.Duration
	// PassImages hands container images to the runtimes unchanged, with no
	// module fetch or image pull: for simulated nodes whose runtimes (of any
	// handler name) are runtime/fake.
	PassImages bool
	// PodNetwork gives OCI pods (runtimes implementing runtime.NetNSer) an
	// address of the node's podCIDR on a bridge (edgeagent/podnet); off,
	// they see only their loopback and report the node address.
	PodNetwork bool
	// PodBridge is the pod bridge's name (podnet.DefaultBridge).
	PodBridge string
	// PodHostNetNS is the network namespace the bridge lives in; empty for
	// the agent's own (tests use one of their own).
	PodHostNetNS string
	// ServiceProxy runs the userspace Service proxy (edgeagent/proxy):
	// ClusterIPs on the dummy link ServiceLink (proxy.DefaultLink) and
	// NodePort listeners on all addresses.
	ServiceProxy bool
	ServiceLink  string
	// DNSAddr is where the cluster DNS server (edgeagent/dns) listens
	// (host:port, or DNSAddrGateway for port 53 of the pod bridge gateway);
	// empty: no DNS server.
	DNSAddr string
	// IngressHTTPAddr and IngressHTTPSAddr are where the Ingress proxy
	// (edgeagent/ingress, docs/ingress.md) serves HTTP and HTTPS
	// (host:port; empty: not served). IngressReady, if set, is called
	// with each bound address.
	IngressHTTPAddr, IngressHTTPSAddr string
	IngressReady                      func(addr string, useTLS bool)
	// HostPaths says which hostPath volumes pods may use
	// (--allow-host-path); nil refuses them all.
	HostPaths *HostPathPolicy
	// MetricsListen, if set, is the host:port where /metrics serves the
	// agent's Prometheus figures (metrics.go, docs/metrics.md; port 0
	// picks a free one); MetricsReady, if set, is called with its URL.
	MetricsListen string
	MetricsReady  func(url string)
	// UsageInterval is how often the agent reports the resource usage of
	// the node and its pods for edgectl top (usage.go); 0 reports none.
	UsageInterval time.Duration
	// AssignmentsCheckInterval is how often (give or take a fifth) the
	// agent compares the keys and revisions of its assignments with what
	// it runs, in case a notification was lost without a sign
	// (DefaultAssignmentsCheckInterval, 5 min, when 0).
	AssignmentsCheckInterval time.Duration
	// VolumeCleanupInterval is how often the agent removes the directories
	// of deleted volumes (volumes_pvc.go; DefaultVolumeCleanupInterval
	// when 0).
	VolumeCleanupInterval time.Duration
}

func (c *Config) defaults() error {
	if c.NodeName == "" {
		return errors.New("agent config: node name required")
	}
	if c.DataDir == "" {
		return errors.New("agent config: data dir required")
	}
	// Log paths handed to runtimes must not depend on the working directory.
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("agent config: data dir: %w", err)
	}
	c.DataDir = abs
	if c.Address == "" {
		c.Address = defaultAddress()
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 10 * time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	return nil
}

func defaultAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// Agent is a running node agent.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	nc   *nats.Conn
	api  API
	db   *state.DB
	mods *moduleCache
	// imgs is the image store of OCI pods and of wasm modules from
	// registries (nil without an "oci" or "wasm" runtime).
	imgs   imageStore
	pulled pulledImages
	st     *statusQueue
	conn   *connWatch
	// revs is the last applied assignments revision (delta resync).
	revs *revisionStore
	// pnet is the pod network (nil unless Config.PodNetwork).
	pnet *podnet.Manager
	// svc is the Services snapshot, proxy and DNS (nil unless
	// Config.ServiceProxy or Config.DNSAddr).
	svc *services
	// ing is the Ingress proxy (nil unless an Ingress address is set).
	ing *ingresses
	// metrics are the Prometheus figures (metrics.go); nil unless
	// Config.MetricsListen.
	metrics *agentMetrics

	mu      sync.Mutex
	workers map[string]*podWorker // by namespace/name
	gone    map[string]*podWorker // tearing down, by state key
	wg      sync.WaitGroup

	// registered is closed once the Node carries the agent's status, so
	// that no heartbeat makes it Ready before its runtimes are known.
	registered     chan struct{}
	registeredOnce sync.Once
}

// Run runs the agent until ctx is done. It starts the pods in its local
// state at once, then works with the control plane over nc whenever nc is
// connected. On return the pods' state is left in place for the next start.
func Run(ctx context.Context, nc *nats.Conn, cfg Config) error {
	a, err := newAgent(nc, cfg)
	if err != nil {
		return err
	}
	defer a.db.Close()
	// Every API client made on nc (services, pod network) speaks as
	// this node: its credentials allow nothing else.
	defer client.BindNode(nc, a.cfg.NodeName)()
	if a.pnet != nil {
		defer a.pnet.Close()
	}
	return a.run(ctx)
}

func newAgent(nc *nats.Conn, cfg Config) (*Agent, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "pods"), filepath.Join(cfg.DataDir, "modules", "sha256")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	db, err := state.Open(filepath.Join(cfg.DataDir, "agent.db"))
	if err != nil {
		return nil, err
	}
	api := newNodeAPI(nc, cfg.NodeName)
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeName),
		nc:         nc,
		api:        api,
		db:         db,
		mods:       newModuleCache(filepath.Join(cfg.DataDir, "modules", "sha256"), api),
		workers:    map[string]*podWorker{},
		registered: make(chan struct{}),
		gone:       map[string]*podWorker{},
	}
	a.mods.setLogger(a.log)
	if cfg.MetricsListen != "" { // off, nothing is counted (simulated fleets run thousands of agents)
		a.metrics = newAgentMetrics(a)
	}
	a.st = newStatusQueue(api, a.log)
	if err := a.st.withOutbox(db); err != nil {
		db.Close()
		return nil, err
	}
	if a.revs, err = newRevisionStore(db); err != nil {
		db.Close()
		return nil, err
	}
	if cfg.ServiceProxy || cfg.DNSAddr != "" || cfg.IngressHTTPAddr != "" || cfg.IngressHTTPSAddr != "" {
		a.svc = newServices(a)
	}
	if cfg.IngressHTTPAddr != "" || cfg.IngressHTTPSAddr != "" {
		a.ing = newIngresses(a)
	}
	if (cfg.Runtimes[manifests.RuntimeOCI] != nil || cfg.Runtimes[manifests.RuntimeWasm] != nil) && !cfg.PassImages {
		store, err := images.Open(filepath.Join(cfg.DataDir, "images"))
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open image store: %w", err)
		}
		a.imgs = store
	}
	if cfg.PodNetwork {
		a.pnet, err = podnet.NewManager(podnet.ManagerConfig{
			NodeName: cfg.NodeName, Logger: a.log,
			Network: podnet.Config{
				StateDir: filepath.Join(cfg.DataDir, "podnet"), Bridge: cfg.PodBridge,
				HostNetNS: cfg.PodHostNetNS, Forwarding: true,
			},
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("pod network: %w", err)
		}
	}
	return a, nil
}

func (a *Agent) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := a.startFromState(ctx); err != nil {
		return err
	}
	a.conn = newConnWatch(a.nc)
	defer a.conn.close()
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stopLogs, err := a.serveLogs(ctx)
	if err != nil {
		return err
	}
	defer stopLogs()
	stopExec, err := a.serveExec(ctx)
	if err != nil {
		return err
	}
	defer stopExec()
	stopTunnels, err := a.serveTunnels(ctx)
	if err != nil {
		return err
	}
	defer stopTunnels()
	stopPrepull, err := a.servePrepull(ctx)
	if err != nil {
		return err
	}
	defer stopPrepull()
	stopMetrics, err := a.serveMetrics(ctx)
	if err != nil {
		return err
	}
	defer stopMetrics()
	a.goRun(func() { a.st.run(ctx) })
	a.goRun(func() { a.revs.run(ctx, a.log) })
	a.goRun(func() { a.imageGCLoop(ctx) })
	a.goRun(func() {
		// Unsent statuses go out as soon as the link is back.
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.conn.connected():
				a.st.poke()
			}
		}
	})
	a.goRun(func() { a.registerLoop(ctx) })
	if a.pnet != nil {
		a.goRun(func() { a.pnet.Run(ctx, client.New(a.nc, client.AsNode(a.cfg.NodeName))) })
	}
	if a.svc != nil {
		a.goRun(func() { a.svc.run(ctx) })
	}
	if a.ing != nil {
		a.goRun(func() { a.ing.run(ctx) })
	}
	a.goRun(func() { a.heartbeatLoop(ctx, js) })
	if a.cfg.UsageInterval > 0 {
		a.goRun(func() { a.usageLoop(ctx) })
	}
	a.goRun(func() { a.watchAssignments(ctx, js) })
	a.goRun(func() { a.volumeCleanupLoop(ctx) }) // volumes_pvc.go
	a.log.Info("agent started", "address", a.cfg.Address, "dataDir", a.cfg.DataDir)
	a.goRun(func() { a.notifySystemd(ctx) }) // READY=1 and WATCHDOG=1 (sdnotify.go)
	<-ctx.Done()
	a.wg.Wait()
	return nil
}

func (a *Agent) goRun(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// startFromState starts a worker for every pod in the local state. When two
// records name the same pod (replaced while the agent was down), the newest
// assignment wins and the other is torn down.
func (a *Agent) startFromState(ctx context.Context) error {
	recs, err := a.db.Pods()
	if err != nil {
		return err
	}
	a.removeOrphanContainers(ctx, recs)
	if a.pnet != nil {
		sandboxes := map[string]bool{}
		for _, rec := range recs {
			if rec.SandboxID != "" {
				sandboxes[rec.SandboxID] = true
			}
		}
		if err := a.pnet.ReleaseAllBut(sandboxes); err != nil {
			a.log.Warn("release pod addresses", "err", err)
		}
	}
	known := map[string]bool{}
	for _, rec := range recs {
		known[filepath.Base(a.podDir(rec.Pod))] = true
		a.startWorker(ctx, rec)
	}
	a.removeOrphanDirs(known)
	return nil
}

// removeOrphanContainers stops and removes the containers of pods the
// runtimes still run but no stored pod records (created just before a
// crash, or of a pod whose removal did not finish). It runs before any
// worker starts.
func (a *Agent) removeOrphanContainers(ctx context.Context, recs []*state.Pod) {
	known := map[string]bool{}
	for _, rec := range recs {
		for _, c := range rec.Containers {
			if c.ID != "" {
				known[c.ID] = true
			}
		}
	}
	for name, rt := range a.cfg.Runtimes {
		list, err := rt.ListContainers(ctx, runtime.ContainerFilter{})
		if err != nil {
			a.log.Warn("list containers", "runtime", name, "err", err)
			continue
		}
		for _, st := range list {
			if known[st.ID] || st.Labels[labelPodUID] == "" {
				continue
			}
			a.log.Info("removing orphan container", "runtime", name, "container", st.ID,
				"pod", st.Labels[labelPodNamespace]+"/"+st.Labels[labelPodName])
			if err := rt.StopContainer(ctx, st.ID, 10*time.Second); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				a.log.Warn("stop orphan container", "container", st.ID, "err", err)
			}
			if err := rt.RemoveContainer(ctx, st.ID); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				a.log.Warn("remove orphan container", "container", st.ID, "err", err)
			}
		}
	}
}

// removeOrphanDirs removes pod directories no stored pod owns (left by a
// removal the agent did not finish).
func (a *Agent) removeOrphanDirs(known map[string]bool) {
	dir := filepath.Join(a.cfg.DataDir, "pods")
	entries, err := os.ReadDir(dir)
	if err != nil {
		a.log.Warn("list pod dirs", "err", err)
		return
	}
	for _, e := range entries {
		if !known[e.Name()] {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				a.log.Warn("remove orphan pod dir", "dir", e.Name(), "err", err)
			}
		}
	}
}

func podKey(namespace, name string) string { return namespace + "/" + name }

// startWorker runs a worker for rec, replacing an older worker of the same pod.
func (a *Agent) startWorker(ctx context.Context, rec *state.Pod) {
	key := podKey(rec.Pod.Namespace, rec.Pod.Name)
	a.mu.Lock()
	defer a.mu.Unlock()
	w := newPodWorker(a, rec)
	if prev := a.gone[rec.Key()]; prev != nil {
		w.after = prev.finished
	}
	if old := a.workers[key]; old != nil {
		if old.revision() > rec.Revision {
			a.retireLocked(w)
			a.goRun(func() { w.run(ctx) })
			return
		}
		a.retireLocked(old)
	}
	a.workers[key] = w
	a.goRun(func() { w.run(ctx) })
}

// retireLocked makes w tear its pod down; a.mu is held.
func (a *Agent) retireLocked(w *podWorker) {
	w.remove()
	a.gone[w.stateKey()] = w
}

// finished is called when a worker's goroutine ends.
func (a *Agent) finished(w *podWorker) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if k := w.stateKey(); a.gone[k] == w {
		delete(a.gone, k)
	}
	close(w.finished)
}

// upsert handles an assignment put: a new pod starts, a known one is updated.
func (a *Agent) upsert(ctx context.Context, pod *manifests.Pod, rev uint64) {
	key := podKey(pod.Namespace, pod.Name)
	a.mu.Lock()
	w := a.workers[key]
	a.mu.Unlock()
	if w != nil && w.uid() == pod.UID {
		w.update(pod, rev)
		return
	}
	a.log.Info("pod assigned", "pod", key, "uid", pod.UID)
	// The worker stores the record at its first sync, after any earlier
	// worker of the same pod has removed its own.
	a.startWorker(ctx, &state.Pod{Pod: pod, Revision: rev, Containers: map[string]state.Container{}})
}

// removePod handles an assignment delete.
func (a *Agent) removePod(namespace, name string) {
	key := podKey(namespace, name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if w := a.workers[key]; w != nil {
		delete(a.workers, key)
		a.log.Info("pod unassigned", "pod", key)
		a.retireLocked(w)
	}
}

// removeAllBut removes the workers whose pods are not in keep (a resync).
func (a *Agent) removeAllBut(keep map[string]bool) {
	a.mu.Lock()
	var gone []string
	for key := range a.workers {
		if !keep[key] {
			gone = append(gone, key)
		}
	}
	a.mu.Unlock()
	for _, key := range gone {
		ns, name := splitKey(key)
		a.removePod(ns, name)
	}
}

func splitKey(key string) (string, string) {
	ns, name, _ := strings.Cut(key, "/")
	return ns, name
}

func (a *Agent) worker(namespace, name string) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workers[podKey(namespace, name)]
}

// podDir is where a pod's logs and volumes live.
func (a *Agent) podDir(pod *manifests.Pod) string {
	return filepath.Join(a.cfg.DataDir, "pods", pod.Namespace+"_"+pod.Name+"_"+pod.UID)
}

// waitFor sleeps for d or until ctx is done; false when ctx is done.
func waitFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
