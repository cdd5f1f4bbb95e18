package edgeagent

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
)

// Resource usage (docs/top.md). Every Config.UsageInterval the agent
// samples the node (/proc/stat, /proc/meminfo) and the running containers
// of its runtimes that implement runtime.Statser, and reports them to the
// control plane in one request (client.UsageReport). CPU is a rate: it is
// known from the second sample on, as the CPU time used between two
// samples over the time between them. A runtime that reports no CPU time
// (wasm: wazero cannot tell one module's CPU time from the agent's) gives
// its containers memory only. Offline, samples are not queued: a usage
// figure is worth nothing a minute later.

// usageSampler turns successive samples into usage figures.
type usageSampler struct {
	procDir  string
	runtimes map[string]runtime.Runtime

	node    *cpuTimes // the node's CPU counters at the last sample
	nodeAt  time.Time
	ctrs    map[string]ctrSample // by runtime name + container ID
	lastErr string               // the last sampling error logged
}

// cpuTimes are the counters of the "cpu" line of /proc/stat, in clock
// ticks, summed over the CPUs, and the number of CPUs.
type cpuTimes struct {
	busy, total uint64
	cpus        int
}

type ctrSample struct {
	cpuNs uint64
	at    time.Time
}

func newUsageSampler(procDir string, runtimes map[string]runtime.Runtime) *usageSampler {
	return &usageSampler{procDir: procDir, runtimes: runtimes, ctrs: map[string]ctrSample{}}
}

// sample reads the node and its containers now and returns the report of
// node. A container that cannot be read is left out (it may have just
// ended); a node figure that cannot be read is an error.
func (s *usageSampler) sample(ctx context.Context, node string) (client.UsageReport, error) {
	now := time.Now()
	var r client.UsageReport
	r.Node.APIVersion, r.Node.Kind = client.MetricsAPIVersion, client.KindNodeMetrics
	r.Node.Metadata.Name = node
	r.Node.Timestamp = now.UTC().Truncate(time.Second)
	r.Node.Usage = manifests.ResourceList{}
	r.Node.Window = "0s"
	mem, err := readMemUsed(filepath.Join(s.procDir, "meminfo"))
	if err != nil {
		return r, err
	}
	r.Node.Usage[client.ResourceMemory] = bytesQuantity(mem)
	cur, err := readCPUTimes(filepath.Join(s.procDir, "stat"))
	if err != nil {
		return r, err
	}
	if prev := s.node; prev != nil && cur.total > prev.total && cur.busy >= prev.busy {
		// The busy share of all ticks, times the CPUs: cores in use.
		nano := float64(cur.busy-prev.busy) / float64(cur.total-prev.total) * float64(cur.cpus) * 1e9
		r.Node.Usage[client.ResourceCPU] = nanoCores(uint64(nano))
		r.Node.Window = window(now.Sub(s.nodeAt))
	}
	s.node, s.nodeAt = &cur, now
	r.Pods = s.samplePods(ctx, now)
	return r, nil
}

// samplePods reads the running containers of every runtime that reports
// usage and sums them by pod.
func (s *usageSampler) samplePods(ctx context.Context, now time.Time) []client.PodMetrics {
	running := runtime.StateRunning
	seen := map[string]ctrSample{}
	pods := map[string]*client.PodMetrics{}
	for _, name := range slices.Sorted(maps.Keys(s.runtimes)) {
		rt := s.runtimes[name]
		st, ok := rt.(runtime.Statser)
		if !ok {
			continue
		}
		list, err := rt.ListContainers(ctx, runtime.ContainerFilter{State: &running})
		if err != nil {
			continue
		}
		for _, c := range list {
			uid, ns, pod, cname := c.Labels[labelPodUID], c.Labels[labelPodNamespace], c.Labels[labelPodName], c.Labels[labelContainerName]
			if uid == "" || ns == "" || pod == "" || cname == "" {
				continue // not a pod's container
			}
			stats, err := st.ContainerStats(ctx, c.ID)
			if err != nil {
				continue
			}
			at := stats.Timestamp
			if at.IsZero() {
				at = now
			}
			usage := manifests.ResourceList{client.ResourceMemory: bytesQuantity(stats.MemoryBytes)}
			key := name + "/" + c.ID
			pm := pods[uid]
			if pm == nil {
				pm = &client.PodMetrics{APIVersion: client.MetricsAPIVersion, Kind: client.KindPodMetrics,
					Metadata: manifests.ObjectMeta{Namespace: ns, Name: pod, UID: uid}, Timestamp: now.UTC().Truncate(time.Second), Window: "0s"}
				pods[uid] = pm
			}
			if stats.CPUNanoSecs > 0 {
				seen[key] = ctrSample{cpuNs: stats.CPUNanoSecs, at: at}
				if prev, ok := s.ctrs[key]; ok && stats.CPUNanoSecs >= prev.cpuNs && at.After(prev.at) {
					d := at.Sub(prev.at)
					usage[client.ResourceCPU] = nanoCores(uint64(float64(stats.CPUNanoSecs-prev.cpuNs) / d.Seconds()))
					pm.Window = window(d)
				}
			}
			pm.Containers = append(pm.Containers, client.ContainerMetrics{Name: cname, Usage: usage})
		}
	}
	s.ctrs = seen // containers gone are forgotten
	out := make([]client.PodMetrics, 0, len(pods))
	for _, pm := range pods {
		slices.SortFunc(pm.Containers, func(a, b client.ContainerMetrics) int { return cmp.Compare(a.Name, b.Name) })
		out = append(out, *pm)
	}
	slices.SortFunc(out, func(a, b client.PodMetrics) int {
		return cmp.Or(cmp.Compare(a.Metadata.Namespace, b.Metadata.Namespace), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	return out
}

// window renders the sampling window as a Go duration to the
// millisecond ("15.002s"), as metrics-server does.
func window(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}

// nanoCores is a CPU rate as a quantity in nanocores ("12500000n" is 12.5m).
func nanoCores(n uint64) manifests.Quantity {
	return manifests.Quantity(strconv.FormatUint(n, 10) + "n")
}

// bytesQuantity is a memory size in KiB, as metrics-server reports it.
func bytesQuantity(b uint64) manifests.Quantity {
	return manifests.Quantity(strconv.FormatUint(b/1024, 10) + "Ki")
}

// readCPUTimes reads the aggregate "cpu" line of /proc/stat: busy is
// every tick but idle and iowait; cpus counts the "cpuN" lines.
func readCPUTimes(path string) (cpuTimes, error) {
	f, err := os.Open(path)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read CPU times: %w", err)
	}
	defer f.Close()
	var t cpuTimes
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		if fields[0] != "cpu" {
			t.cpus++
			continue
		}
		if len(fields) < 5 {
			return cpuTimes{}, fmt.Errorf("read CPU times: %s: short cpu line %q", path, sc.Text())
		}
		// user nice system idle iowait irq softirq steal (guest and
		// guest_nice are already counted in user and nice).
		for i, v := range fields[1:min(len(fields), 9)] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("read CPU times: %s: field %d of the cpu line: %w", path, i+1, err)
			}
			t.total += n
			if i != 3 && i != 4 { // idle, iowait
				t.busy += n
			}
		}
		found = true
	}
	if err := sc.Err(); err != nil {
		return cpuTimes{}, fmt.Errorf("read CPU times: %s: %w", path, err)
	}
	if !found {
		return cpuTimes{}, fmt.Errorf("read CPU times: %s: no cpu line", path)
	}
	t.cpus = max(t.cpus, 1)
	return t, nil
}

// readMemUsed returns MemTotal - MemAvailable of /proc/meminfo, in bytes.
func readMemUsed(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read memory usage: %w", err)
	}
	var total, avail uint64
	var haveTotal, haveAvail bool
	for line := range strings.Lines(string(data)) {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, fmt.Errorf("read memory usage: %s: %s has no value", path, key)
		}
		kib, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read memory usage: %s: %s: %w", path, key, err)
		}
		if key == "MemTotal" {
			total, haveTotal = kib*1024, true
		} else {
			avail, haveAvail = kib*1024, true
		}
	}
	if !haveTotal || !haveAvail {
		return 0, fmt.Errorf("read memory usage: %s: MemTotal and MemAvailable required (Linux 3.14 or later)", path)
	}
	if avail > total {
		return 0, nil
	}
	return total - avail, nil
}

// usageLoop samples and reports every Config.UsageInterval, the first
// report (memory only) at once.
func (a *Agent) usageLoop(ctx context.Context) {
	s := newUsageSampler("/proc", a.cfg.Runtimes)
	cl := client.New(a.nc, client.AsNode(a.cfg.NodeName))
	t := time.NewTicker(a.cfg.UsageInterval)
	defer t.Stop()
	for {
		a.reportUsage(ctx, s, cl)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reportUsage takes one sample and sends it if the link is up. Failures
// are logged once each, not every interval.
func (a *Agent) reportUsage(ctx context.Context, s *usageSampler, cl *client.Client) {
	r, err := s.sample(ctx, a.cfg.NodeName)
	if err == nil && a.nc.IsConnected() {
		rctx, cancel := context.WithTimeout(ctx, min(a.cfg.UsageInterval, 10*time.Second))
		err = cl.ReportUsage(rctx, r)
		cancel()
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		if msg := err.Error(); msg != s.lastErr {
			a.log.Warn("report usage", "err", err)
			s.lastErr = msg
		}
		return
	}
	s.lastErr = ""
}

// CheckUsageInterval checks an --usage-interval: 0 (off), or from 1s to
// half of how long the control plane keeps a report (messaging.UsageTTL),
// so that one lost report does not drop the node out of edgectl top.
func CheckUsageInterval(d time.Duration) error {
	if d == 0 {
		return nil
	}
	if d < time.Second || d > messaging.UsageTTL/2 {
		return fmt.Errorf("usage interval %v: want 0 (off) or from 1s to %v", d, messaging.UsageTTL/2)
	}
	return nil
}
