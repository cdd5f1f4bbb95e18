package podnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// ErrNotReady is returned while the node has no podCIDR yet.
var ErrNotReady = errors.New("pod network not ready: node has no podCIDR")

// NodeWatcher lists and watches objects (client.Client does).
type NodeWatcher interface {
	Watch(ctx context.Context, resource, namespace, selector string) (<-chan client.Event, error)
}

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// NodeName is the agent's node, whose spec.podCIDR the pods use.
	NodeName string
	// Network is the template of the node's network; its PodCIDR comes
	// from the Node (or, before the API is reached, the saved state).
	Network Config
	Logger  *slog.Logger
	// RetryInterval is how long a failed watch waits before trying again (2s).
	RetryInterval time.Duration
}

// Manager keeps the node's pod network in line with the Nodes in the API:
// it sets the network up once the node's podCIDR is known and routes the
// other nodes' podCIDRs via their InternalIP.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	mu     sync.Mutex
	net    *Network
	ready  chan struct{}
	routes map[string]Route // other nodes' routes, by node name
}

// NewManager starts a manager; the network of an earlier run (its podCIDR
// is in the IPAM state) is set up at once so pods start offline.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 2 * time.Second
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), routes: map[string]Route{}}
	if cidr := savedCIDR(filepath.Join(cfg.Network.StateDir, "ipam.json")); cidr != nil {
		if err := m.setCIDR(cidr); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func savedCIDR(file string) *net.IPNet {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var st ipamState
	if json.Unmarshal(raw, &st) != nil {
		return nil
	}
	_, cidr, err := net.ParseCIDR(st.CIDR)
	if err != nil {
		return nil
	}
	return cidr
}

// setCIDR (re)creates the network for cidr.
func (m *Manager) setCIDR(cidr *net.IPNet) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.net != nil && m.net.PodCIDR().String() == cidr.String() {
		return nil
	}
	cfg := m.cfg.Network
	cfg.PodCIDR = cidr
	n, err := New(cfg)
	if err != nil {
		return err
	}
	if m.net != nil {
		m.net.Close()
	}
	m.net = n
	select {
	case <-m.ready:
	default:
		close(m.ready)
	}
	m.log.Info("pod network ready", "podCIDR", cidr.String(), "gateway", n.Gateway().String())
	return nil
}

// Ready reports whether pods can be wired.
func (m *Manager) Ready() bool {
	select {
	case <-m.ready:
		return true
	default:
		return false
	}
}

// Network returns the node's network, or nil before the podCIDR is known.
func (m *Manager) Network() *Network {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.net
}

// Setup wires a sandbox's network namespace and returns its pod IP.
func (m *Manager) Setup(id, nsPath string) (net.IP, error) {
	n := m.Network()
	if n == nil {
		return nil, ErrNotReady
	}
	return n.Setup(id, nsPath)
}

// Teardown removes a sandbox's network; without a network it does nothing.
func (m *Manager) Teardown(id string) error {
	n := m.Network()
	if n == nil {
		return nil
	}
	return n.Teardown(id)
}

// ReleaseAllBut frees the addresses of sandboxes not in keep (left by a
// crash between sandbox removal and release) and their veths.
func (m *Manager) ReleaseAllBut(keep map[string]bool) error {
	n := m.Network()
	if n == nil {
		return nil
	}
	var errs []error
	for _, id := range n.IPAM().Allocated() {
		if !keep[id] {
			errs = append(errs, n.Teardown(id))
		}
	}
	return errors.Join(errs...)
}

// Close releases the netlink handles; links, addresses and routes stay.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.net != nil {
		m.net.Close()
	}
}

// Run watches the Nodes until ctx is done, watching again after a failure.
func (m *Manager) Run(ctx context.Context, w NodeWatcher) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		events, err := w.Watch(wctx, "nodes", "", "")
		if err != nil {
			cancel()
			m.log.Debug("watch nodes", "err", err)
			t := time.NewTimer(m.cfg.RetryInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		m.mu.Lock()
		m.routes = map[string]Route{} // the watch lists every node again
		m.mu.Unlock()
		m.follow(ctx, events)
		cancel()
	}
}

// follow applies the events of one watch until it ends or ctx is done
// (a watch need not close its channel when its context ends).
func (m *Manager) follow(ctx context.Context, events <-chan client.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			node, isNode := ev.Object.(*manifests.Node)
			if !isNode {
				continue
			}
			if err := m.handle(ev.Type, node); err != nil {
				m.log.Warn("pod network", "node", node.Name, "err", err)
			}
		}
	}
}

func (m *Manager) handle(typ string, node *manifests.Node) error {
	if node.Name == m.cfg.NodeName {
		if typ == client.Deleted || node.Spec.PodCIDR == "" {
			return nil
		}
		_, cidr, err := net.ParseCIDR(node.Spec.PodCIDR)
		if err != nil {
			return fmt.Errorf("podCIDR %q: %w", node.Spec.PodCIDR, err)
		}
		if err := m.setCIDR(cidr); err != nil {
			return err
		}
		return m.syncRoutes()
	}
	m.mu.Lock()
	prev, had := m.routes[node.Name]
	r, ok := nodeRoute(node)
	if typ == client.Deleted || !ok {
		delete(m.routes, node.Name)
	} else {
		m.routes[node.Name] = r
	}
	changed := had != (ok && typ != client.Deleted) || (had && ok && (prev.Dst.String() != r.Dst.String() || !prev.Via.Equal(r.Via)))
	m.mu.Unlock()
	if !changed {
		return nil
	}
	return m.syncRoutes()
}

// nodeRoute is the route to a node's podCIDR via its InternalIP.
func nodeRoute(node *manifests.Node) (Route, bool) {
	if node.Spec.PodCIDR == "" {
		return Route{}, false
	}
	_, cidr, err := net.ParseCIDR(node.Spec.PodCIDR)
	if err != nil || cidr.IP.To4() == nil {
		return Route{}, false
	}
	for _, a := range node.Status.Addresses {
		if a.Type == "InternalIP" {
			if ip := net.ParseIP(a.Address).To4(); ip != nil && !ip.IsLoopback() {
				return Route{Dst: cidr, Via: ip}, true
			}
		}
	}
	return Route{}, false
}

// Routes returns the routes the manager wants, sorted by destination.
func (m *Manager) Routes() []Route {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Route, 0, len(m.routes))
	for _, r := range m.routes {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dst.String() < out[j].Dst.String() })
	return out
}

func (m *Manager) syncRoutes() error {
	n := m.Network()
	if n == nil {
		return nil
	}
	return n.SyncRoutes(m.Routes())
}
