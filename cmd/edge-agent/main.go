// Command edge-agent runs the node agent of one device.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/oci"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
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
	heartbeat                                                  time.Duration
	podNetwork                                                 bool
	podBridge                                                  string
	serviceProxy                                               bool
	dnsAddr                                                    string
	tlsCA, tlsCert, tlsKey                                     string
	creds, joinToken                                           string
	allowHostPath                                              []string
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
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
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
	f.StringArrayVar(&o.allowHostPath, "allow-host-path", nil,
		"allow hostPath volumes under this absolute directory (repeatable; default: hostPath volumes are refused)")
	f.StringVar(&o.tlsCA, "tls-ca", os.Getenv("EDGE_TLS_CA"),
		"CA file (PEM) that verifies the control plane's TLS certificate, e.g. a copy of its <data-dir>/tls/ca.pem; requires TLS (env EDGE_TLS_CA)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "client certificate (PEM) for a control plane that requires one (--tls-client-ca); needs --tls-key")
	f.StringVar(&o.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&o.creds, "creds", "", "NATS creds file of this node (default: <data-dir>/node.creds once joined)")
	f.StringVar(&o.joinToken, "join-token", os.Getenv("EDGE_JOIN_TOKEN"),
		"join token from `edgectl token create`, used once to get <data-dir>/node.creds (env EDGE_JOIN_TOKEN)")
	return cmd
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

func run(ctx context.Context, o options) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
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
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	rt, err := wasm.New(ctx, wasm.Options{CacheDir: filepath.Join(o.dataDir, "wasm-cache")})
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
		Runtimes:          runtimes,
		Logger:            log,
		PodNetwork:        podNetwork,
		PodBridge:         o.podBridge,
		ServiceProxy:      o.serviceProxy,
		DNSAddr:           dnsAddr,
	})
}
