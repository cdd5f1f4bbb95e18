// Command edge-agent runs the node agent of one device.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/oci"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func main() {
	// A container shim is this binary re-executed: it must not get further.
	oci.MaybeRunShim()
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		os.Exit(1)
	}
}

type options struct {
	server, nodeName, dataDir, labels, address, logLevel, runc string
	logFormat                                                  string
	heartbeat                                                  time.Duration
	keepalive                                                  time.Duration
	usageInterval                                              time.Duration
	podNetwork                                                 bool
	podBridge                                                  string
	serviceProxy                                               bool
	dnsAddr                                                    string
	tlsCA, tlsCert, tlsKey                                     string
	creds, joinToken                                           string
	allowHostPath                                              []string
	metricsListen                                              string

	// Ingress proxy (docs/ingress.md).
	ingressAddress                    string
	ingressHTTPPort, ingressHTTPSPort int

	// Memory (setMemory).
	gcPercent    int
	memoryLimit  string
	releasePages time.Duration

	// wasmDefaultMemory caps wasm containers without limits.memory.
	wasmDefaultMemory string
}

func newCommand() *cobra.Command {
	hostname, _ := os.Hostname()
	server := os.Getenv("EDGE_SERVER")
	if server == "" {
		server = "nats://127.0.0.1:4222"
	}
	o := options{}
	cmd := &cobra.Command{
		Use:           "edge-agent",
		Short:         "Run the edge agent of this device: register, heartbeat, run the pods assigned to it",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := setMemory(o, cmd.Flags().Changed("gc-percent"), cmd.Flags().Changed("memory-limit")); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", server, "NATS URL of the control plane (env EDGE_SERVER)")
	f.StringVar(&o.nodeName, "node-name", hostname, "name of this node")
	f.StringVar(&o.dataDir, "data-dir", "./edge-agent-data", "directory for state, modules, pod logs")
	f.StringVar(&o.labels, "labels", "", "node labels, k=v,k2=v2")
	f.StringVar(&o.address, "address", "", "node InternalIP (default: first non-loopback IPv4)")
	f.DurationVar(&o.heartbeat, "heartbeat-interval", 10*time.Second, "how often the node lease is renewed")
	f.DurationVar(&o.keepalive, "keepalive", 10*time.Second, "how often the connection to the control plane is pinged; two unanswered pings mean a dead link (reconnect and resync)")
	f.DurationVar(&o.usageInterval, "usage-interval", 15*time.Second, "how often the CPU and memory usage of the node and its pods is reported, for edgectl top (0: never)")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (off when empty; no authentication: keep it on loopback or a trusted network; docs/metrics.md)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text (logfmt) or json (one object per line, for journald/log shippers)")
	f.StringVar(&o.runc, "runc", "", "path of the runc binary for OCI containers (default: runc in PATH)")
	// Off by default until the control plane allocates node podCIDRs and
	// the e2e harness (several agents on one host) opts out.
	f.BoolVar(&o.podNetwork, "pod-network", false,
		"give OCI pods an IP of the node's podCIDR on a bridge, routed to other nodes (needs root and runc)")
	f.StringVar(&o.podBridge, "pod-bridge", "edge0", "name of the pod network bridge")
	f.BoolVar(&o.serviceProxy, "service-proxy", os.Geteuid() == 0,
		"proxy Service ClusterIPs (on the dummy link edge-svc) and NodePorts to their endpoints (needs root)")
	f.StringVar(&o.dnsAddr, "dns-addr", edgeagent.DNSAddrGateway,
		`address (host:port) of the cluster DNS server; "gateway": port 53 of the pod bridge gateway (needs --pod-network); "" for none`)
	f.IntVar(&o.ingressHTTPPort, "ingress-http-port", 18080,
		"port of the Ingress proxy for HTTP (0: off; docs/ingress.md)")
	f.IntVar(&o.ingressHTTPSPort, "ingress-https-port", 18443,
		"port of the Ingress proxy for HTTPS, certificates from the Ingresses' TLS Secrets (0: off)")
	f.StringVar(&o.ingressAddress, "ingress-address", "",
		"address the Ingress proxy listens on (default: all addresses)")
	f.StringArrayVar(&o.allowHostPath, "allow-host-path", nil,
		"allow hostPath volumes under this absolute directory (repeatable; default: hostPath volumes are refused)")
	f.StringVar(&o.tlsCA, "tls-ca", os.Getenv("EDGE_TLS_CA"),
		"CA file (PEM) that verifies the control plane's TLS certificate, e.g. a copy of its <data-dir>/tls/ca.pem; requires TLS (env EDGE_TLS_CA)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "client certificate (PEM) for a control plane that requires one (--tls-client-ca); needs --tls-key")
	f.StringVar(&o.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&o.creds, "creds", "", "NATS creds file of this node (default: <data-dir>/node.creds once joined)")
	f.StringVar(&o.joinToken, "join-token", os.Getenv("EDGE_JOIN_TOKEN"),
		"join token from `edgectl token create`, used once to get <data-dir>/node.creds (env EDGE_JOIN_TOKEN)")
	f.IntVar(&o.gcPercent, "gc-percent", 50,
		"Go garbage collection target: heap growth in percent between collections (as GOGC; env GOGC wins over the default); -1 turns the collector off")
	f.StringVar(&o.memoryLimit, "memory-limit", "64Mi",
		"soft limit of the agent's Go memory (as GOMEMLIMIT, a quantity such as 48Mi; 0 for none; env GOMEMLIMIT wins over the default): the collector works harder near it, it is not a cap")
	f.StringVar(&o.wasmDefaultMemory, "wasm-default-memory", "128Mi",
		"memory limit of a wasm container that sets no resources.limits.memory (a quantity such as 64Mi; 0 for none: a module may then grow to 4 GiB); it reports OOMKilled when it reaches it")
	f.DurationVar(&o.releasePages, "release-startup-pages", 2*time.Second,
		"this long after start, give the pages of the agent binary that only start-up used back to the kernel (0: never)")
	return cmd
}

// setMemory applies the memory flags. GOGC and GOMEMLIMIT in the
// environment win over the flags' defaults, not over flags given.
func setMemory(o options, gcSet, limitSet bool) error {
	if o.gcPercent < -1 || o.gcPercent == 0 {
		return fmt.Errorf("--gc-percent %d: want a positive percentage, or -1 for no collection", o.gcPercent)
	}
	q, err := manifests.ParseQuantity(o.memoryLimit)
	if err != nil {
		return fmt.Errorf("--memory-limit %q: %w", o.memoryLimit, err)
	}
	limit := q.Value()
	if limit < 0 {
		return fmt.Errorf("--memory-limit %q: must not be negative", o.memoryLimit)
	}
	if o.releasePages < 0 {
		return fmt.Errorf("--release-startup-pages %s: must not be negative", o.releasePages)
	}
	if o.keepalive < time.Second {
		return fmt.Errorf("--keepalive %s: must be at least 1s", o.keepalive)
	}
	if gcSet || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(o.gcPercent)
	}
	if limitSet || os.Getenv("GOMEMLIMIT") == "" {
		if limit == 0 {
			limit = math.MaxInt64
		}
		debug.SetMemoryLimit(limit)
	}
	if o.releasePages > 0 {
		time.AfterFunc(o.releasePages, releaseStartupPages)
	}
	return nil
}

// releaseStartupPages asks the kernel to reclaim the pages of this
// binary's code and read-only data (madvise MADV_PAGEOUT; Linux 5.4 and
// later, a no-op before). Start-up runs code spread over most of the
// binary, and the kernel maps file pages in large folios, so an agent that
// has started holds nearly all of its binary (~13 MiB) although it then
// runs about half of it: that half is read back on demand, the rest stays
// free. Pages that container shims (the same binary) map are kept.
func releaseStartupPages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe || strings.Contains(f[1], "w") {
			continue // only the binary's read-only mappings: code and constants
		}
		from, to, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(from, 16, 64)
		end, err2 := strconv.ParseUint(to, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT)
	}
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// newLogger builds the process logger from --log-level and --log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func run(ctx context.Context, o options) error {
	log, err := newLogger(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return err
	}
	tlsOpts, err := messaging.ClientTLS(o.tlsCA, o.tlsCert, o.tlsKey)
	if err != nil {
		return fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
	}
	if o.nodeName == "" {
		return fmt.Errorf("--node-name: required (the hostname is unknown)")
	}
	if err := edgeagent.CheckUsageInterval(o.usageInterval); err != nil {
		return fmt.Errorf("--usage-interval: %w", err)
	}
	wasmDefaultMemory, err := manifests.ParseQuantity(o.wasmDefaultMemory)
	if err != nil {
		return fmt.Errorf("--wasm-default-memory %q: %w", o.wasmDefaultMemory, err)
	}
	if wasmDefaultMemory.Value() < 0 {
		return fmt.Errorf("--wasm-default-memory %q: must not be negative", o.wasmDefaultMemory)
	}
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	rt, err := wasm.New(ctx, wasm.Options{CacheDir: filepath.Join(o.dataDir, "wasm-cache"), DefaultMemoryLimitBytes: wasmDefaultMemory.Value()})
	if err != nil {
		return fmt.Errorf("start wasm runtime: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rt.Close(cctx)
	}()
	runtimes := map[string]runtime.Runtime{rt.Name(): rt}
	podNetwork := o.podNetwork
	ociRT, err := oci.New(ctx, oci.Options{Root: filepath.Join(o.dataDir, "oci"), RuncPath: o.runc})
	switch {
	case errors.Is(err, runtime.ErrUnavailable):
		log.Warn("OCI containers disabled: runc not found or not usable; this node advertises wasm only", "err", err)
		podNetwork = false // wasm pods use the host network
	case err != nil:
		return fmt.Errorf("start oci runtime: %w", err)
	default:
		// Closing leaves the containers running for the next start.
		defer ociRT.Close(context.Background())
		runtimes[ociRT.Name()] = ociRT
	}
	// The node's identity: --creds, else <data-dir>/node.creds (read
	// offline), else a join with --join-token, else none (--dev).
	credsOpts, credsPath, err := edgeagent.Credentials(ctx, edgeagent.CredsConfig{
		Server: o.server, NodeName: o.nodeName, DataDir: o.dataDir,
		CredsFile: o.creds, JoinToken: o.joinToken, Dial: tlsOpts, Logger: log,
	})
	if err != nil {
		return err
	}
	if credsPath != "" {
		log.Info("NATS credentials", "creds", credsPath)
	}
	// Connect in the background: the agent starts its pods from its local
	// state while the control plane is unreachable.
	nc, err := nats.Connect(o.server, append(append(tlsOpts, credsOpts...),
		nats.Name("edge-agent "+o.nodeName),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		// A link that drops packets without closing (a route gone, a
		// radio out of range) is noticed after two missed pings rather
		// than nats.go's default 2 × 2 minutes.
		nats.PingInterval(o.keepalive),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from the control plane", "err", err)
			}
		}),
		// A TLS failure of the first attempt lands here (later attempts
		// retry silently): say how to fix it.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if hint := messaging.TLSHint(err, "--tls-ca FILE"); hint != "" {
				log.Error("cannot connect to the control plane over TLS; retrying", "err", err, "hint", hint)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected", "url", c.ConnectedUrl()) }),
		// Permission violations: what the node's credentials refuse.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("NATS error", "err", err)
		}),
		// The server refused the node's credentials twice (revoked, or
		// another cluster's): the agent keeps its pods running offline.
		nats.ClosedHandler(func(c *nats.Conn) {
			if c.LastError() == nil {
				return // closed on the way out
			}
			log.Error("connection to the control plane closed; running offline (re-join with a new --join-token if the node was revoked)", "err", c.LastError())
		}),
	)...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", o.server, err)
	}
	defer nc.Close()
	dnsAddr := o.dnsAddr
	if dnsAddr == edgeagent.DNSAddrGateway && !podNetwork {
		dnsAddr = "" // no pod bridge, no gateway to serve on
	}
	ingressHTTP, err := ingressAddr(o.ingressAddress, o.ingressHTTPPort, "--ingress-http-port")
	if err != nil {
		return err
	}
	ingressHTTPS, err := ingressAddr(o.ingressAddress, o.ingressHTTPSPort, "--ingress-https-port")
	if err != nil {
		return err
	}
	hostPaths, err := edgeagent.NewHostPathPolicy(o.allowHostPath)
	if err != nil {
		return err
	}
	fmt.Printf("edge-agent %s started\n", o.nodeName)
	return edgeagent.Run(ctx, nc, edgeagent.Config{
		NodeName:          o.nodeName,
		DataDir:           o.dataDir,
		HostPaths:         hostPaths,
		Labels:            labels,
		Address:           o.address,
		HeartbeatInterval: o.heartbeat,
		MetricsListen:     o.metricsListen,
		UsageInterval:     o.usageInterval,
		Runtimes:          runtimes,
		Logger:            log,
		PodNetwork:        podNetwork,
		PodBridge:         o.podBridge,
		ServiceProxy:      o.serviceProxy,
		DNSAddr:           dnsAddr,
		IngressHTTPAddr:   ingressHTTP,
		IngressHTTPSAddr:  ingressHTTPS,
	})
}

// ingressAddr is the listen address of an Ingress proxy port ("" when 0).
func ingressAddr(host string, port int, flag string) (string, error) {
	if port == 0 {
		return "", nil
	}
	if port < 0 || port > 65535 {
		return "", fmt.Errorf("%s %d: want a port (1-65535) or 0 for off", flag, port)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}
