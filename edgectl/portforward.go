package edgectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

type portForwardOptions struct {
	*options
	addresses []string
	// ready, when set, is called with the bound listeners (tests).
	ready func([]net.Listener)
}

// forwardedPort is one LOCAL:REMOTE pair; remote names a container port
// (a number or, for pods and workloads, a port name).
type forwardedPort struct {
	local  int
	remote string
}

func newPortForwardCmd(o *options) *cobra.Command {
	p := &portForwardOptions{options: o}
	cmd := &cobra.Command{
		Use:   "port-forward TYPE/NAME|POD [LOCAL_PORT:]REMOTE_PORT [...]",
		Short: "Forward local ports to a pod, through NATS (works behind NAT)",
		Long: `Listen on local ports and forward each connection to a port of a pod, through
the agent of the pod's node. TYPE/NAME may be pod/NAME, deploy/NAME (and the
other workloads: rs, sts, ds, job) or svc/NAME, which pick a running, ready pod;
for a Service, REMOTE_PORT is the Service's port, forwarded to its targetPort.`,
		Example: `  edgectl port-forward pod/web 8080:80
  edgectl port-forward deploy/web :80 --address 0.0.0.0
  edgectl port-forward svc/web 8443:https`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageErrorf(cmd, "expected TYPE/NAME and at least one port: port-forward TYPE/NAME [LOCAL_PORT:]REMOTE_PORT")
			}
			ports, err := parseForwardedPorts(args[1:])
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			return p.run(cmd.Context(), args[0], ports)
		},
	}
	cmd.Flags().StringSliceVar(&p.addresses, "address", []string{"127.0.0.1"}, "addresses to listen on (comma-separated); only IP addresses or localhost")
	return cmd
}

// parseForwardedPorts reads [LOCAL:]REMOTE arguments; an empty or zero
// LOCAL picks a free port.
func parseForwardedPorts(args []string) ([]forwardedPort, error) {
	var out []forwardedPort
	for _, a := range args {
		local, remote, ok := strings.Cut(a, ":")
		if !ok {
			local, remote = a, a
		}
		if remote == "" {
			return nil, fmt.Errorf("port %q: the remote port is missing", a)
		}
		fp := forwardedPort{remote: remote}
		if n, err := strconv.Atoi(remote); err == nil && (n < 1 || n > 65535) {
			return nil, fmt.Errorf("port %q: remote port %d out of range 1-65535", a, n)
		} else if err != nil && !ok {
			return nil, fmt.Errorf("port %q: a named remote port needs a local port (LOCAL:%s)", a, remote)
		}
		if local != "" {
			n, err := strconv.Atoi(local)
			if err != nil || n < 0 || n > 65535 {
				return nil, fmt.Errorf("port %q: local port %q is not a number in 0-65535", a, local)
			}
			fp.local = n
		}
		out = append(out, fp)
	}
	return out, nil
}

func (p *portForwardOptions) run(ctx context.Context, target string, ports []forwardedPort) error {
	cl, err := p.client(ctx)
	if err != nil {
		return err
	}
	pod, svc, err := p.resolvePod(ctx, cl, target)
	if err != nil {
		return err
	}
	remote := make([]int32, len(ports))
	for i, fp := range ports {
		if remote[i], err = remotePort(pod, svc, fp.remote); err != nil {
			return err
		}
	}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for i, fp := range ports {
		for _, addr := range p.addresses {
			if addr == "localhost" {
				addr = "127.0.0.1"
			}
			if net.ParseIP(addr) == nil {
				return fmt.Errorf("--address %q: not an IP address or localhost", addr)
			}
			l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(fp.local)))
			if err != nil {
				return fmt.Errorf("listen for port %d: %w", remote[i], err)
			}
			listeners = append(listeners, l)
			fmt.Fprintf(p.streams.Out, "Forwarding from %s -> %d\n", l.Addr(), remote[i])
		}
	}
	if p.ready != nil {
		p.ready(listeners)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(listeners))
	for n, l := range listeners {
		port := remote[n/len(p.addresses)]
		local := l.Addr().(*net.TCPAddr).Port
		wg.Go(func() { errs <- p.serve(ctx, cl, pod, l, local, port, &wg) })
	}
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	cancel()
	for _, l := range listeners {
		l.Close()
	}
	listeners = nil
	wg.Wait()
	return err
}

// serve accepts connections on l and forwards each to port of the pod.
func (p *portForwardOptions) serve(ctx context.Context, cl *client.Client, pod *manifests.Pod, l net.Listener, local int, port int32, wg *sync.WaitGroup) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", l.Addr(), err)
		}
		fmt.Fprintf(p.streams.Out, "Handling connection for %d\n", local)
		wg.Go(func() {
			defer conn.Close()
			err := cl.PortForward(ctx, pod.Spec.NodeName, client.PortForwardRequest{Namespace: pod.Namespace, Pod: pod.Name, Port: port}, conn)
			if err != nil && ctx.Err() == nil {
				fmt.Fprintf(p.streams.ErrOut, "error: forwarding port %d to pod %s: %v\n", port, pod.Name, err)
			}
		})
	}
}

// resolvePod finds the pod of target: POD, pod/NAME, a workload (a ready
// pod it selects) or svc/NAME (a ready pod behind the Service, returned
// with the Service).
func (p *portForwardOptions) resolvePod(ctx context.Context, cl *client.Client, target string) (*manifests.Pod, *manifests.Service, error) {
	kindName, name, ok := strings.Cut(target, "/")
	if !ok {
		kindName, name = "pods", target
	}
	if name == "" {
		return nil, nil, fmt.Errorf("%q: a name is required (TYPE/NAME)", target)
	}
	k, err := manifests.KindForResource(kindName)
	if err != nil {
		return nil, nil, fmt.Errorf("port-forward: %w", err)
	}
	rctx, cancel := p.reqCtx(ctx)
	obj, err := cl.Get(rctx, k.Resource, p.namespace, name)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	var selector string
	var svc *manifests.Service
	switch o := obj.(type) {
	case *manifests.Pod:
		if err := forwardable(o); err != nil {
			return nil, nil, err
		}
		return o, nil, nil
	case *manifests.Service:
		if len(o.Spec.Selector) == 0 {
			return nil, nil, fmt.Errorf("service %s has no selector: no pod to forward to", name)
		}
		svc, selector = o, manifests.SelectorFromSet(o.Spec.Selector).String()
	default:
		// Workloads: spec.selector is a LabelSelector.
		raw, _ := json.Marshal(obj)
		var w struct {
			Spec struct {
				Selector *manifests.LabelSelector `json:"selector"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(raw, &w); err != nil || w.Spec.Selector == nil {
			return nil, nil, fmt.Errorf("port-forward: cannot pick a pod of a %s", k.Kind)
		}
		sel, err := manifests.LabelSelectorAsSelector(w.Spec.Selector)
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: selector: %w", k.Kind, name, err)
		}
		selector = sel.String()
	}
	rctx, cancel = p.reqCtx(ctx)
	objs, _, err := cl.List(rctx, "pods", p.namespace, selector)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	var pods []*manifests.Pod
	for _, o := range objs {
		if pod, ok := o.(*manifests.Pod); ok && forwardable(pod) == nil {
			pods = append(pods, pod)
		}
	}
	if len(pods) == 0 {
		return nil, nil, fmt.Errorf("no running pod of %s found (selector %s)", target, selector)
	}
	// Ready first, then the newest, as kubectl prefers.
	sort.SliceStable(pods, func(i, j int) bool {
		ri, rj := manifests.IsPodReady(pods[i]), manifests.IsPodReady(pods[j])
		if ri != rj {
			return ri
		}
		return pods[i].CreationTimestamp.After(pods[j].CreationTimestamp)
	})
	return pods[0], svc, nil
}

// forwardable says why a pod cannot be forwarded to, if it cannot.
func forwardable(pod *manifests.Pod) error {
	if pod.Spec.NodeName == "" {
		return fmt.Errorf("pod %s is not scheduled to a node yet", pod.Name)
	}
	if pod.Status.Phase != manifests.PodRunning {
		return fmt.Errorf("unable to forward port because pod is not running. Current status=%s", pod.Status.Phase)
	}
	return nil
}

// remotePort is the container port remote names: a number, a container
// port name, or for a Service its port (number or name) mapped to its
// targetPort.
func remotePort(pod *manifests.Pod, svc *manifests.Service, remote string) (int32, error) {
	if svc != nil {
		var sp *manifests.ServicePort
		for i := range svc.Spec.Ports {
			s := &svc.Spec.Ports[i]
			if strconv.Itoa(int(s.Port)) == remote || (s.Name != "" && s.Name == remote) {
				sp = s
			}
		}
		if sp == nil {
			return 0, fmt.Errorf("service %s does not have a port %s", svc.Name, remote)
		}
		switch t := sp.TargetPort; {
		case t.IsString:
			remote = t.StrVal
		case t.IntVal != 0:
			return t.IntVal, nil
		default:
			return sp.Port, nil
		}
	}
	if n, err := strconv.Atoi(remote); err == nil {
		return int32(n), nil
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == remote {
				return cp.ContainerPort, nil
			}
		}
	}
	return 0, errors.New("pod " + pod.Name + " has no container port named " + strconv.Quote(remote))
}
