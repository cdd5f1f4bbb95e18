package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

// ErrWasmExec is the failure of an exec probe on a wasm container.
var ErrWasmExec = errors.New("exec probes are not supported for wasm containers")

// maxExecOutput bounds the command output kept as a probe message.
const maxExecOutput = 10 << 10

// Target is what a container's probes run against.
type Target struct {
	// ContainerID is the runtime's ID of the running container.
	ContainerID string
	// Execer runs exec probes; nil (or Wasm) makes them fail.
	Execer runtime.Execer
	// Wasm marks a wasm container: exec probes are not supported.
	Wasm bool
	// NetNS is the path of the pod's network namespace; httpGet and
	// tcpSocket probes dial from inside it. Empty means the host network.
	NetNS string
	// Host is the default host of httpGet and tcpSocket probes (the pod
	// IP); empty means 127.0.0.1.
	Host string
	// Ports are the container's ports, for probes naming one.
	Ports []manifests.ContainerPort
	// Observe, if set, is told the result and duration of every probe
	// attempt (the agent's metrics).
	Observe func(kind Kind, ok bool, d time.Duration)
}

func (t *Target) host(h string) string {
	switch {
	case h != "":
		return h
	case t.Host != "":
		return t.Host
	}
	return "127.0.0.1"
}

func (t *Target) port(p manifests.IntOrString) (int, error) {
	if !p.IsString {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port number: %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	for _, cp := range t.Ports {
		if cp.Name == p.StrVal && (cp.Protocol == "" || strings.EqualFold(cp.Protocol, "TCP")) {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("cannot find port %q in container", p.StrVal)
}

func (t *Target) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if t.NetNS == "" {
		var d net.Dialer
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return DialInNetNS(ctx, t.NetNS, network, addr)
	}
}

// run runs one probe attempt; a nil error is success, otherwise the error
// text is the failure message as the kubelet words it.
func (t *Target) run(ctx context.Context, p *manifests.Probe) error {
	switch {
	case p.Exec != nil:
		return t.exec(ctx, p.Exec)
	case p.HTTPGet != nil:
		return t.httpGet(ctx, p.HTTPGet)
	case p.TCPSocket != nil:
		return t.tcp(ctx, p.TCPSocket)
	}
	return errors.New("probe has no handler")
}

func (t *Target) exec(ctx context.Context, a *manifests.ExecAction) error {
	if t.Wasm {
		return ErrWasmExec
	}
	if t.Execer == nil {
		return errors.New("exec probes are not supported by this runtime")
	}
	out := &limitedBuffer{max: maxExecOutput}
	code, err := t.Execer.Exec(ctx, t.ContainerID, runtime.ExecRequest{Cmd: a.Command, Stdout: out, Stderr: out})
	if ctx.Err() != nil {
		return fmt.Errorf("command %q timed out", strings.Join(a.Command, " "))
	}
	if err != nil {
		return fmt.Errorf("exec %q: %w", strings.Join(a.Command, " "), err)
	}
	if code != 0 {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = fmt.Sprintf("command %q exited with %d", strings.Join(a.Command, " "), code)
		}
		return errors.New(msg)
	}
	return nil
}

func (t *Target) tcp(ctx context.Context, a *manifests.TCPSocketAction) error {
	port, err := t.port(a.Port)
	if err != nil {
		return err
	}
	conn, err := t.dialer()(ctx, "tcp", net.JoinHostPort(t.host(a.Host), strconv.Itoa(port)))
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

func (t *Target) httpGet(ctx context.Context, a *manifests.HTTPGetAction) error {
	port, err := t.port(a.Port)
	if err != nil {
		return err
	}
	scheme := strings.ToLower(a.Scheme)
	if scheme == "" {
		scheme = "http"
	}
	if scheme != "http" && scheme != "https" {
		return fmt.Errorf("unsupported scheme %q", a.Scheme)
	}
	path := a.Path
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(t.host(a.Host), strconv.Itoa(port))}
	if ref, err := url.Parse(path); err == nil {
		u.Path, u.RawQuery = ref.Path, ref.RawQuery
	} else {
		u.Path = path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("User-Agent", "edgeorch-probe/1.0")
	req.Header.Set("Accept", "*/*")
	for _, h := range a.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	tr := &http.Transport{
		DialContext:       t.dialer(),
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
		Proxy:             nil,
	}
	defer tr.CloseIdleConnections()
	origin := u.Hostname()
	client := &http.Client{Transport: tr, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		// Like the kubelet: follow redirects on the same host only; a
		// redirect elsewhere ends the probe with the redirect response.
		if r.URL.Hostname() != origin || len(via) >= 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxExecOutput))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return nil
	}
	return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}
