// Package cluster tests the control plane on an external three-server NATS
// JetStream cluster with R3 buckets: real nats-server processes (built from
// the module's nats-server version) clustered over loopback routes, one of
// them killed with SIGKILL under load.
package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// natsServerBin is the nats-server binary built by TestMain (or
// $NATS_SERVER_BIN).
var natsServerBin string

func TestMain(m *testing.M) {
	if urls := os.Getenv(childEnv); urls != "" {
		os.Exit(runChildControlPlane(urls))
	}
	dir, err := os.MkdirTemp("", "edge-cluster-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	natsServerBin = os.Getenv("NATS_SERVER_BIN")
	if natsServerBin == "" {
		natsServerBin = filepath.Join(dir, "nats-server")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", natsServerBin, "github.com/nats-io/nats-server/v2")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build nats-server: %v\n%s", err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// natsNode is one nats-server process of a test cluster.
type natsNode struct {
	name                    string
	dir                     string // config, store and log
	client, route, httpPort int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (n *natsNode) url() string     { return fmt.Sprintf("nats://127.0.0.1:%d", n.client) }
func (n *natsNode) httpURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.httpPort) }
func (n *natsNode) logPath() string { return filepath.Join(n.dir, "server.log") }

// natsCluster is a set of nats-server processes routed to each other
// (none when size is 1: a standalone server).
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startCluster starts size servers and waits until each is healthy
// (JetStream meta group current).
func startCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	ports := freePorts(t, 3*size)
	for i := range size {
		c.nodes = append(c.nodes, &natsNode{
			name:     fmt.Sprintf("n%d", i+1),
			dir:      t.TempDir(),
			client:   ports[3*i],
			route:    ports[3*i+1],
			httpPort: ports[3*i+2],
		})
	}
	for i := range c.nodes {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.kill(i)
		}
		if t.Failed() {
			for _, n := range c.nodes {
				out, _ := os.ReadFile(n.logPath())
				t.Logf("%s log (tail):\n%s", n.name, tail(string(out), 30))
			}
		}
	})
	for _, n := range c.nodes {
		c.waitHealthy(n)
	}
	c.waitAgreed()
	return c
}

// waitAgreed waits until every server is routed to every other one and
// all agree on one JetStream meta leader.
func (c *natsCluster) waitAgreed() {
	c.t.Helper()
	if len(c.nodes) == 1 {
		return
	}
	eventually(c.t, 20*time.Second, func() error {
		leaders := map[string]bool{}
		for _, n := range c.nodes {
			var routez struct {
				Routes []struct {
					RemoteName string `json:"remote_name"`
				} `json:"routes"`
			}
			if err := getJSON(n.httpURL()+"/routez", &routez); err != nil {
				return err
			}
			remotes := map[string]bool{}
			for _, r := range routez.Routes {
				remotes[r.RemoteName] = true
			}
			if len(remotes) != len(c.nodes)-1 {
				return fmt.Errorf("%s routed to %v, want every other server", n.name, remotes)
			}
			var jsz struct {
				Meta struct {
					Leader string `json:"leader"`
					Size   int    `json:"cluster_size"`
				} `json:"meta_cluster"`
			}
			if err := getJSON(n.httpURL()+"/jsz", &jsz); err != nil {
				return err
			}
			if jsz.Meta.Leader == "" || jsz.Meta.Size != len(c.nodes) {
				return fmt.Errorf("%s: meta leader %q, cluster size %d", n.name, jsz.Meta.Leader, jsz.Meta.Size)
			}
			leaders[jsz.Meta.Leader] = true
		}
		if len(leaders) != 1 {
			return fmt.Errorf("servers disagree on the meta leader: %v", leaders)
		}
		return nil
	})
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// config is the server's configuration file: the example of
// docs/scale-out.md with test ports.
func (c *natsCluster) config(n *natsNode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\nmax_payload: 8MB\n", n.name, n.client, n.httpPort)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", filepath.Join(n.dir, "store"))
	if len(c.nodes) > 1 {
		var routes []string
		for _, o := range c.nodes {
			if o != n {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.route))
			}
		}
		fmt.Fprintf(&b, "cluster {\n  name: edge\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", n.route, strings.Join(routes, ", "))
	}
	return b.String()
}

// start starts (or restarts, on the same ports and store) server i.
func (c *natsCluster) start(i int) {
	t := c.t
	t.Helper()
	n := c.nodes[i]
	conf := filepath.Join(n.dir, "server.conf")
	if err := os.WriteFile(conf, []byte(c.config(n)), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(n.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(natsServerBin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
}

// kill kills server i with SIGKILL (no clean shutdown, no leader hand-off)
// and waits until it is gone. Killing a stopped server does nothing.
func (c *natsCluster) kill(i int) {
	n := c.nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// index returns the index of the server called name, -1 if none.
func (c *natsCluster) index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// urls is the comma-separated client URLs of every server (--nats-url).
func (c *natsCluster) urls() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, n.url())
	}
	return strings.Join(us, ",")
}

// waitHealthy waits until the server's /healthz answers ok (JetStream on
// and, in a cluster, the meta group current).
func (c *natsCluster) waitHealthy(n *natsNode) {
	c.t.Helper()
	eventually(c.t, 20*time.Second, func() error {
		resp, err := http.Get(n.httpURL() + "/healthz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s healthz: %s %s", n.name, resp.Status, body.String())
		}
		return nil
	})
}

// streamState is the state of a stream as held by one server.
type streamState struct {
	Messages uint64 `json:"messages"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

// localStream reads, from server n's monitoring port, the state of its
// own copy of stream.
func localStream(n *natsNode, stream string) (streamState, error) {
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name  string      `json:"name"`
				State streamState `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := getJSON(n.httpURL()+"/jsz?accounts=true&streams=true", &jsz); err != nil {
		return streamState{}, err
	}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			if s.Name == stream {
				return s.State, nil
			}
		}
	}
	return streamState{}, fmt.Errorf("%s holds no copy of stream %s", n.name, stream)
}

// eventually polls f until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// scanLines calls each with every line r reads.
func scanLines(r *bufio.Scanner, each func(string)) {
	for r.Scan() {
		each(r.Text())
	}
}
