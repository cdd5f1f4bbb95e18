package edgeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/probe"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/nats-io/nats.go"
)

// openTunnels counts the open port-forward and cp sessions of the agents
// in this process (tests look at it).
var openTunnels atomic.Int64

// Tunnel timing, in nanoseconds (client.TunnelKeepalive and
// client.TunnelTimeout; tests shorten them).
var tunnelKeepalive, tunnelTimeout atomic.Int64

func init() {
	tunnelKeepalive.Store(int64(client.TunnelKeepalive))
	tunnelTimeout.Store(int64(client.TunnelTimeout))
}

// portForwardDialTimeout bounds the connection to the pod's port.
const portForwardDialTimeout = 5 * time.Second

// serveTunnels answers port-forward and cp requests for the node's pods.
func (a *Agent) serveTunnels(ctx context.Context) (func(), error) {
	var subs []*nats.Subscription
	stop := func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}
	for verb, handle := range map[string]func(context.Context, *nats.Msg){
		client.NodeVerbPortForward: a.handlePortForward,
		client.NodeVerbCopy:        a.handleCopy,
	} {
		subj := messaging.NodeSubject(a.cfg.NodeName, verb)
		sub, err := a.nc.Subscribe(subj, func(m *nats.Msg) { go handle(ctx, m) })
		if err != nil {
			stop()
			return nil, fmt.Errorf("serve %s on %s: %w", verb, subj, err)
		}
		subs = append(subs, sub)
	}
	return stop, nil
}

func respondTunnel(m *nats.Msg, session string, serr *client.StatusError) {
	resp := client.Response{Error: serr}
	if serr == nil {
		resp.Result, _ = json.Marshal(client.TunnelStarted{Session: session})
	}
	raw, _ := json.Marshal(resp)
	m.Respond(raw)
}

// openTunnel subscribes a session of verb, pointed at the client's inbox.
// acceptTunnel opens the tunnel of a session of verb and answers m with its
// id, counting it open until closed is called; ok is false when it could
// not (m was answered with the error, what names the command).
func (a *Agent) acceptTunnel(m *nats.Msg, verb, inbox, what string) (t *client.Tunnel, closed func(), ok bool) {
	t, session, err := a.openTunnel(verb, inbox)
	if err != nil {
		respondTunnel(m, "", client.Errorf(client.CodeInternal, "%s: %v", what, err))
		return nil, nil, false
	}
	openTunnels.Add(1)
	respondTunnel(m, session, nil)
	return t, func() { openTunnels.Add(-1) }, true
}

func (a *Agent) openTunnel(verb, inbox string) (*client.Tunnel, string, error) {
	session := newSessionID()
	t, err := client.NewTunnel(a.nc, client.TunnelSubject(a.cfg.NodeName, verb, session))
	if err != nil {
		return nil, "", err
	}
	t.SetPeer(inbox)
	t.Keepalive, t.Timeout = time.Duration(tunnelKeepalive.Load()), time.Duration(tunnelTimeout.Load())
	return t, session, nil
}

func (a *Agent) handlePortForward(ctx context.Context, m *nats.Msg) {
	var req client.PortForwardRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		respondTunnel(m, "", client.Errorf(client.CodeInvalid, "port-forward: decode request: %v", err))
		return
	}
	if req.Inbox == "" {
		respondTunnel(m, "", client.Errorf(client.CodeInvalid, "port-forward: no inbox for the data"))
		return
	}
	if req.Port < 1 || req.Port > 65535 {
		respondTunnel(m, "", client.Errorf(client.CodeInvalid, "port-forward: port %d out of range 1-65535", req.Port))
		return
	}
	conn, serr := a.dialPod(ctx, req)
	if serr != nil {
		respondTunnel(m, "", serr)
		return
	}
	defer conn.Close()
	t, closed, ok := a.acceptTunnel(m, client.NodeVerbPortForward, req.Inbox, "port-forward")
	if !ok {
		return
	}
	defer closed()
	if err := t.Run(ctx, conn, conn); err != nil {
		a.log.Debug("port-forward session ended", "pod", req.Namespace+"/"+req.Pod, "port", req.Port, "err", err)
	}
}

// dialPod connects to port req.Port of the pod: for an OCI pod on the
// loopback address inside the pod's network namespace (as kubectl
// port-forward does), for a wasm pod, which shares the node's network and
// listens only on the ports it declares, on the node's loopback address
// once the port is one of its containerPorts.
func (a *Agent) dialPod(ctx context.Context, req client.PortForwardRequest) (net.Conn, *client.StatusError) {
	w := a.worker(req.Namespace, req.Pod)
	if w == nil {
		return nil, client.Errorf(client.CodeNotFound, "pod %q not found on node %s", req.Pod, a.cfg.NodeName)
	}
	pod := w.pod()
	handler := w.handler(pod)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(req.Port)))
	dctx, cancel := context.WithTimeout(ctx, portForwardDialTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	switch handler {
	case manifests.RuntimeWasm:
		if !wasmDeclares(pod, req.Port) {
			return nil, client.Errorf(client.CodeInvalid, "wasm pod %s listens only on its declared TCP containerPorts (%s), not on %d",
				req.Pod, declaredPorts(pod), req.Port)
		}
		var d net.Dialer
		conn, err = d.DialContext(dctx, "tcp", addr)
	default:
		rt := a.cfg.Runtimes[handler]
		if rt == nil {
			return nil, client.Errorf(client.CodeUnavailable, "runtime handler %q is not available on node %s", handler, a.cfg.NodeName)
		}
		nn, ok := rt.(runtime.NetNSer)
		if !ok {
			return nil, client.Errorf(client.CodeInvalid, "port-forward is not supported for %s pods", handler)
		}
		w.mu.Lock()
		sandbox := w.rec.SandboxID
		w.mu.Unlock()
		if sandbox == "" {
			return nil, client.Errorf(client.CodeInvalid, "pod %s is not running", req.Pod)
		}
		path, nerr := nn.SandboxNetNS(dctx, sandbox)
		if nerr != nil {
			return nil, client.Errorf(client.CodeInvalid, "pod %s is not running: %v", req.Pod, nerr)
		}
		conn, err = probe.DialInNetNS(dctx, path, "tcp", addr)
	}
	if err != nil {
		return nil, client.Errorf(client.CodeUnavailable, "connect to port %d of pod %s: %v", req.Port, req.Pod, err)
	}
	return conn, nil
}

// wasmDeclares reports whether a container of the wasm pod listens on port.
func wasmDeclares(pod *manifests.Pod, port int32) bool {
	for _, c := range pod.Spec.Containers {
		for _, p := range wasmPorts(c.Ports) {
			if p.ContainerPort == port {
				return true
			}
		}
	}
	return false
}

func declaredPorts(pod *manifests.Pod) string {
	var out []string
	for _, c := range pod.Spec.Containers {
		for _, p := range wasmPorts(c.Ports) {
			out = append(out, strconv.Itoa(int(p.ContainerPort)))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
