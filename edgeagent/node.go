package edgeagent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

func parseQuantity(q manifests.Quantity) (manifests.Quantity, error) {
	return manifests.ParseQuantity(string(q))
}

// nodeLabels are the labels the agent puts on its Node.
func (a *Agent) nodeLabels() map[string]string {
	l := map[string]string{
		"kubernetes.io/hostname": a.cfg.NodeName,
		"kubernetes.io/os":       goruntime.GOOS,
		"kubernetes.io/arch":     goruntime.GOARCH,
	}
	for name := range a.cfg.Runtimes {
		l["node.edge.io/runtime-"+name] = "true"
	}
	maps.Copy(l, a.cfg.Labels)
	return l
}

// registerLoop registers the node until it works, and again after every
// reconnection (the control plane may have lost or replaced the Node).
func (a *Agent) registerLoop(ctx context.Context) {
	for {
		next := a.conn.connected()
		delay := time.Second
		for {
			err := a.register(ctx)
			for try := 0; client.IsConflict(err) && try < 5; try++ {
				// The control plane wrote the Node meanwhile (its Ready
				// condition): read it again and retry at once.
				err = a.register(ctx)
			}
			if err == nil {
				a.log.Info("node registered")
				a.registeredOnce.Do(func() { close(a.registered) })
				break
			}
			a.log.Warn("register node", "err", err)
			if !waitFor(ctx, delay) {
				return
			}
			delay = min(2*delay, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-next:
		}
	}
}

// register creates the Node or merges the agent's labels into it, then
// writes its status, keeping the conditions the control plane set.
func (a *Agent) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	labels := a.nodeLabels()
	var node *manifests.Node
	obj, err := a.api.Get(ctx, "nodes", "", a.cfg.NodeName)
	switch {
	case client.IsNotFound(err):
		_, created, err := a.api.Apply(ctx, &manifests.Node{
			TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: manifests.ObjectMeta{Name: a.cfg.NodeName, Labels: labels},
		})
		if err != nil {
			return fmt.Errorf("create node %s: %w", a.cfg.NodeName, err)
		}
		node = created.(*manifests.Node)
	case err != nil:
		return fmt.Errorf("get node %s: %w", a.cfg.NodeName, err)
	default:
		node = obj.(*manifests.Node)
		changed := false
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		for k, v := range labels {
			if node.Labels[k] != v {
				node.Labels[k] = v
				changed = true
			}
		}
		if changed {
			updated, err := a.api.Update(ctx, node)
			if err != nil {
				return fmt.Errorf("update node %s labels: %w", a.cfg.NodeName, err)
			}
			node = updated.(*manifests.Node)
		}
	}
	st, err := a.nodeStatus()
	if err != nil {
		return err
	}
	st.Conditions = node.Status.Conditions
	node.Status = st
	if _, err := a.api.UpdateStatus(ctx, node); err != nil {
		return fmt.Errorf("update node %s status: %w", a.cfg.NodeName, err)
	}
	return nil
}

// nodeStatus describes the device: capacity, addresses, system info and
// runtime handlers. Ready is the control plane's to set.
func (a *Agent) nodeStatus() (manifests.NodeStatus, error) {
	memKiB, err := memTotalKiB("/proc/meminfo")
	if err != nil {
		return manifests.NodeStatus{}, err
	}
	memMi := memKiB / 1024
	cpus := goruntime.NumCPU()
	capacity := manifests.ResourceList{
		"cpu":    manifests.Quantity(strconv.Itoa(cpus)),
		"memory": manifests.Quantity(fmt.Sprintf("%dMi", memMi)),
		"pods":   "110",
	}
	allocatable := manifests.ResourceList{
		"cpu":    manifests.Quantity(fmt.Sprintf("%dm", cpus*1000*95/100)),
		"memory": manifests.Quantity(fmt.Sprintf("%dMi", memMi*95/100)),
		"pods":   "110",
	}
	hostname, _ := os.Hostname()
	if hostname == "" {
		hostname = a.cfg.NodeName
	}
	st := manifests.NodeStatus{
		Capacity:    capacity,
		Allocatable: allocatable,
		Addresses: []manifests.NodeAddress{
			{Type: "InternalIP", Address: a.cfg.Address},
			{Type: "Hostname", Address: hostname},
		},
		NodeInfo: manifests.NodeSystemInfo{
			MachineID:               machineID(),
			KernelVersion:           kernelVersion(),
			OSImage:                 osImage(),
			ContainerRuntimeVersion: a.runtimeVersion(),
			KubeletVersion:          "edge-agent/" + Version,
			OperatingSystem:         goruntime.GOOS,
			Architecture:            goruntime.GOARCH,
		},
	}
	for _, name := range slices.Sorted(maps.Keys(a.cfg.Runtimes)) {
		st.RuntimeHandlers = append(st.RuntimeHandlers, manifests.NodeRuntimeHandler{Name: name})
	}
	return st, nil
}

// runtimeVersion names the runtimes of the node: "oci/runc, wasm/wazero".
func (a *Agent) runtimeVersion() string {
	engines := map[string]string{manifests.RuntimeOCI: "runc", manifests.RuntimeWasm: "wazero"}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(a.cfg.Runtimes)) {
		if e := engines[name]; e != "" {
			out = append(out, name+"/"+e)
		} else {
			out = append(out, name)
		}
	}
	return strings.Join(out, ", ")
}

func memTotalKiB(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read memory size: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			n, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read memory size: %s: %w", path, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("read memory size: no MemTotal in %s", path)
}

func kernelVersion() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

func machineID() string {
	b, _ := os.ReadFile("/etc/machine-id")
	return strings.TrimSpace(string(b))
}

func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// heartbeatLoop renews the node's lease every HeartbeatInterval, the first
// time at once.
func (a *Agent) heartbeatLoop(ctx context.Context, js jetstream.JetStream) {
	select {
	case <-a.registered:
	case <-ctx.Done():
		return
	}
	var kv jetstream.KeyValue
	for {
		if kv == nil {
			kv = a.openHeartbeats(ctx, js)
		}
		if kv != nil {
			lease := client.Lease{
				Node:            a.cfg.NodeName,
				RenewTime:       time.Now().UTC().Format(time.RFC3339),
				DurationSeconds: int(4 * a.cfg.HeartbeatInterval / time.Second),
				AgentVersion:    Version,
			}
			if lease.DurationSeconds < 1 {
				lease.DurationSeconds = 1
			}
			raw, _ := json.Marshal(lease)
			cctx, cancel := context.WithTimeout(ctx, a.cfg.HeartbeatInterval)
			_, err := kv.Put(cctx, messaging.LeaseKey(a.cfg.NodeName), raw)
			cancel()
			if err != nil {
				a.log.Debug("renew lease", "err", err)
			} else {
				a.metrics.heartbeat(time.Now())
			}
		}
		if !waitFor(ctx, a.cfg.HeartbeatInterval) {
			return
		}
	}
}

// openHeartbeats opens the bucket the node's lease goes to: the heartbeats
// bucket, or the leases bucket where the control plane has none or the
// node's credentials predate it (nil when neither opens).
func (a *Agent) openHeartbeats(ctx context.Context, js jetstream.JetStream) jetstream.KeyValue {
	b, err := js.KeyValue(ctx, messaging.BucketHeartbeats)
	if err == nil {
		return b
	}
	a.log.Debug("open heartbeats bucket; trying the leases bucket", "err", err)
	if b, err = js.KeyValue(ctx, messaging.BucketLeases); err != nil {
		a.log.Debug("open leases bucket", "err", err)
		return nil
	}
	return b
}
