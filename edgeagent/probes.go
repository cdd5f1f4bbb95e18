package edgeagent

import (
	"context"
	"errors"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/podstatus"
	"github.com/edgeorch/edgeorch/edgeagent/probe"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

func hasProbes(spec *manifests.Container) bool {
	return spec.LivenessProbe != nil || spec.ReadinessProbe != nil || spec.StartupProbe != nil
}

// probe keeps a prober on a running container with probes and kills the
// container when its liveness or startup probe failed: the next sync
// restarts it under the restart policy and back-off.
func (w *podWorker) probe(ctx context.Context, rt runtime.Runtime, pod *manifests.Pod, handler, sandbox string, spec *manifests.Container, c *ctr, startedAt time.Time) {
	if !hasProbes(spec) || c.id == "" {
		return
	}
	if c.probeKill == "" {
		if c.prober == nil {
			t := probe.Target{ContainerID: c.id, Wasm: handler == manifests.RuntimeWasm, Ports: spec.Ports, Observe: w.a.metrics.observeProbe}
			if ex, ok := rt.(runtime.Execer); ok {
				t.Execer = ex
			}
			if nn, ok := rt.(runtime.NetNSer); ok && handler != manifests.RuntimeWasm {
				path, err := nn.SandboxNetNS(ctx, sandbox)
				if err != nil {
					w.a.log.Warn("probe: sandbox network namespace", "pod", pod.Namespace+"/"+pod.Name, "container", spec.Name, "err", err)
					return // not probed (so not ready) until the next sync
				}
				// Inside the pod's namespace: its pod IP when wired to the
				// pod network, else loopback.
				t.NetNS, t.Host = path, w.podIP
			}
			c.prober = probe.Start(ctx, spec, t, startedAt, w.poke)
		}
		st := c.prober.State()
		if !st.Kill {
			return
		}
		c.probeKill = st.Message
		c.probeGrace = gracePeriod(pod)
		if g := st.KillProbe.TerminationGracePeriodSeconds; g != nil {
			c.probeGrace = time.Duration(*g) * time.Second
		}
		c.stopProber()
		w.a.log.Info("container failed a probe, will be restarted", "pod", pod.Namespace+"/"+pod.Name, "container", spec.Name, "why", c.probeKill)
	}
	// Until it has exited: a failed stop is tried again at the next sync.
	if err := rt.StopContainer(ctx, c.id, c.probeGrace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		w.a.log.Warn("stop container after failed probe", "pod", pod.Namespace+"/"+pod.Name, "container", spec.Name, "err", err)
	}
	w.poke()
}

// stopProber ends the probes of the container's current instance.
func (c *ctr) stopProber() {
	if c.prober != nil {
		c.prober.Stop()
		c.prober = nil
	}
}

// probeResults are the startup and readiness results of the pod's running
// containers with probes. A container not probed yet is neither ready nor,
// with a startup probe, started.
func (w *podWorker) probeResults(pod *manifests.Pod) map[string]podstatus.ProbeResult {
	var out map[string]podstatus.ProbeResult
	for i := range pod.Spec.Containers {
		spec := &pod.Spec.Containers[i]
		if !hasProbes(spec) {
			continue
		}
		if out == nil {
			out = map[string]podstatus.ProbeResult{}
		}
		c := w.container(spec.Name)
		r := podstatus.ProbeResult{Started: spec.StartupProbe == nil}
		switch {
		case c.probeKill != "":
			r.Ready = false
		case c.prober != nil:
			st := c.prober.State()
			r = podstatus.ProbeResult{Started: st.Started, Ready: st.Ready && !st.Kill}
		}
		out[spec.Name] = r
	}
	return out
}
