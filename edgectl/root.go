// Package edgectl implements the edgectl command line: kubectl-like verbs
// (apply, get, describe, delete, logs, wait, label, push, version) talking
// to the control plane API over NATS through package client.
package edgectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

// Version is the client version, set at build time with -ldflags -X.
var Version = "v0.1.0-dev"

// DefaultServer is the control plane URL used when neither --server nor
// EDGE_SERVER is given.
const DefaultServer = "nats://127.0.0.1:4222"

// maxConnectTimeout bounds how long connecting may take, so that an
// unreachable server is reported quickly.
const maxConnectTimeout = 5 * time.Second

// IOStreams are the standard streams a command reads and writes.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// options are the global flags and the lazily opened connection.
type options struct {
	streams        IOStreams
	server         string
	creds          string
	tlsCA          string
	tlsCert        string
	tlsKey         string
	namespace      string
	allNamespaces  bool
	requestTimeout time.Duration

	nsExplicit func() bool
	cfg        configState // the config file and context (config.go)
	nc         *nats.Conn
	cl         *client.Client
}

// client connects on first use and returns the API client.
func (o *options) client(ctx context.Context) (*client.Client, error) {
	if o.cl != nil {
		return o.cl, nil
	}
	timeout := o.requestTimeout
	if timeout <= 0 || timeout > maxConnectTimeout {
		timeout = maxConnectTimeout
	}
	// Once connected, ride out a control-plane restart (wait, get -w, logs -f).
	opts := []nats.Option{nats.Name("edgectl"), nats.Timeout(timeout), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		// A refused publish comes back as the request's Forbidden error;
		// other asynchronous errors are worth a line.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if !errors.Is(err, nats.ErrPermissionViolation) {
				fmt.Fprintf(os.Stderr, "edgectl: %v\n", err)
			}
		})}
	if o.creds != "" {
		// The creds' own inbox prefix: a readonly user may subscribe
		// only there.
		credsOpts, err := auth.CredsOptions(o.creds)
		if err != nil {
			return nil, fmt.Errorf("--creds: %w", err)
		}
		opts = append(opts, credsOpts...)
	}
	tlsOpts, err := messaging.ClientTLS(o.tlsCA, o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
	}
	opts = append(opts, tlsOpts...)
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(o.server, opts...)
		done <- result{nc, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		r.err = ctx.Err()
	}
	if r.err != nil {
		return nil, &connectError{server: o.server, err: r.err, creds: o.creds != "", hint: o.contextHint()}
	}
	o.nc = r.nc
	o.cl = client.New(r.nc)
	return o.cl, nil
}

// close releases the connection, if one was opened.
func (o *options) close() {
	if o.nc != nil {
		o.nc.Close()
		o.nc, o.cl = nil, nil
	}
}

// reqCtx bounds one API request by --request-timeout.
func (o *options) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.requestTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, o.requestTimeout)
}

// listNamespace is the namespace to list in: "" with -A.
func (o *options) listNamespace() string {
	if o.allNamespaces {
		return ""
	}
	return o.namespace
}

// NewRootCommand builds the edgectl command tree writing to streams.
// Run executes it and maps errors to kubectl-like messages and exit codes.
func NewRootCommand(streams IOStreams) *cobra.Command {
	cmd, _ := newRoot(streams)
	return cmd
}

func newRoot(streams IOStreams) (*cobra.Command, *options) {
	if streams.In == nil {
		streams.In = os.Stdin
	}
	if streams.Out == nil {
		streams.Out = io.Discard
	}
	if streams.ErrOut == nil {
		streams.ErrOut = io.Discard
	}
	o := &options{streams: streams}
	root := &cobra.Command{
		Use:           "edgectl",
		Short:         "edgectl controls the edge orchestrator's control plane",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	server := os.Getenv("EDGE_SERVER")
	if server == "" {
		server = DefaultServer
	}
	pf := root.PersistentFlags()
	pf.StringVar(&o.server, "server", server, "NATS URL of the control plane (env EDGE_SERVER)")
	pf.StringVar(&o.creds, "creds", os.Getenv("EDGE_CREDS"), "NATS credentials file, e.g. <control-plane data-dir>/auth/admin.creds (env EDGE_CREDS)")
	pf.StringVar(&o.tlsCA, "tls-ca", os.Getenv("EDGE_TLS_CA"), "CA file (PEM) that verifies the server's TLS certificate, e.g. the control plane's <data-dir>/tls/ca.pem (env EDGE_TLS_CA)")
	pf.StringVar(&o.tlsCert, "tls-cert", "", "client certificate (PEM) for a server that requires one; needs --tls-key")
	pf.StringVar(&o.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	pf.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of the request")
	pf.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list across all namespaces")
	pf.DurationVar(&o.requestTimeout, "request-timeout", 10*time.Second, "how long to wait for one server request")
	nsFlag := pf.Lookup("namespace")
	o.nsExplicit = func() bool { return nsFlag.Changed }
	o.addConfigFlags(root)

	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c.CommandPath(), err: err}
	})
	root.AddCommand(
		newApplyCmd(o),
		newGetCmd(o),
		newDescribeCmd(o),
		newDeleteCmd(o),
		newLogsCmd(o),
		newExecCmd(o),
		newWaitCmd(o),
		newLabelCmd(o),
		newAnnotateCmd(o),
		newPushCmd(o),
		newVersionCmd(o),
		newRolloutCmd(o),
		newScaleCmd(o),
		newAutoscaleCmd(o), // autoscale.go
		newPrepullCmd(o),
		newTokenCmd(o),
		newNodeCmd(o),
		newUserCmd(o),
		newAuthCmd(o),
		newTopCmd(o),
		newConfigCmd(o),
		newCompletionCmd(o),
		newDiffCmd(o),
		newCreateCmd(o),
		newPortForwardCmd(o),
		newCpCmd(o),
	)
	registerCompletions(root, o)
	return root, o
}

// Run executes edgectl with args and returns the process exit code.
func Run(ctx context.Context, args []string, streams IOStreams) int {
	root, o := newRoot(streams)
	defer o.close()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	printError(o.streams.ErrOut, err)
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	return 1
}

// usageError is a mistake in how a command was called.
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

// connectError says the server could not be reached.
type connectError struct {
	server string
	err    error
	creds  bool   // --creds was given
	hint   string // where the server setting came from, when a context
}

func (e *connectError) Error() string {
	msg := fmt.Sprintf("Unable to connect to the server at %s: %v", e.server, e.err)
	if hint := messaging.TLSHint(e.err, "--tls-ca FILE (env EDGE_TLS_CA)"); hint != "" {
		msg += "\n" + hint
	}
	if errors.Is(e.err, nats.ErrAuthorization) {
		if e.creds {
			msg += "\nThe credentials were refused: revoked, expired, or issued by another control plane."
		} else {
			msg += "\nThis control plane requires credentials: --creds FILE (env EDGE_CREDS); it writes admin.creds and readonly.creds under <data-dir>/auth."
		}
	}
	if e.hint != "" {
		msg += "\n" + e.hint
	}
	return msg
}
func (e *connectError) Unwrap() error { return e.err }

// errReported means the failure was already printed; only the exit code remains.
var errReported = errors.New("errors were reported")

// printError writes err the way kubectl does.
func printError(w io.Writer, err error) {
	var se *client.StatusError
	var ue *usageError
	var ce *connectError
	switch {
	case errors.Is(err, errReported):
	case errors.As(err, new(*exitCodeError)):
		fmt.Fprintln(w, err.Error())
	case errors.As(err, &ce):
		fmt.Fprintln(w, ce.Error())
	case errors.As(err, &ue):
		fmt.Fprintf(w, "error: %v\nSee '%s --help' for usage.\n", ue.err, ue.cmd)
	case errors.As(err, &se):
		fmt.Fprintln(w, formatStatusError(se))
	case strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(w, "error: %v\nSee 'edgectl --help' for usage.\n", err)
	default:
		fmt.Fprintf(w, "error: %v\n", err)
	}
}

// formatStatusError renders an API error: `Error from server (NotFound): ...`.
func formatStatusError(se *client.StatusError) string {
	if se.Code == "" {
		return "Error from server: " + se.Message
	}
	return fmt.Sprintf("Error from server (%s): %s", se.Code, se.Message)
}

// reportError prints err now (for commands that keep going after a failure).
func (o *options) reportError(err error) {
	printError(o.streams.ErrOut, err)
}
