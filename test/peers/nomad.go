package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/test/bench/proc"
)

// nomad is a Nomad agent running as server and client on loopback ports,
// with the raw_exec driver; a task is a job of one /bin/sleep task.
type nomad struct {
	bin  string
	d    *proc.Daemon
	base string // http://127.0.0.1:PORT/v1
	hc   *http.Client
	dir  string
}

func newNomad(path string) system {
	return &nomad{bin: path, hc: &http.Client{Timeout: 30 * time.Second}}
}

func (n *nomad) name() string { return "nomad" }

func (n *nomad) start(ctx context.Context, dir string) error {
	n.dir = dir
	ports, err := proc.FreePorts(3)
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`bind_addr = "127.0.0.1"
data_dir  = %q
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
ports {
  http = %d
  rpc  = %d
  serf = %d
}
server {
  enabled          = true
  bootstrap_expect = 1
}
client {
  enabled           = true
  network_interface = "lo"
  servers           = ["127.0.0.1:%d"]
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
disable_update_check = true
`, filepath.Join(dir, "data"), ports[0], ports[1], ports[2], ports[1])
	cf := filepath.Join(dir, "nomad.hcl")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return err
	}
	n.base = fmt.Sprintf("http://127.0.0.1:%d/v1", ports[0])
	if n.d, err = proc.Start(filepath.Join(dir, "nomad.log"), nil, n.bin, "agent", "-config", cf); err != nil {
		return err
	}
	return proc.PollFor(ctx, 2*time.Minute, 5*time.Millisecond, func() error {
		if err := n.d.Exited(); err != nil {
			return err
		}
		var nodes []struct{ Status string }
		if err := n.call(ctx, "GET", "/nodes", nil, &nodes); err != nil {
			return err
		}
		for _, nd := range nodes {
			if nd.Status == "ready" {
				return nil
			}
		}
		return fmt.Errorf("no ready node among %d", len(nodes))
	})
}

// call sends a JSON request to the HTTP API and decodes the reply into out.
func (n *nomad) call(ctx context.Context, method, path string, in, out any) error {
	return httpJSON(ctx, n.hc, method, n.base+path, in, out)
}

func httpJSON(ctx context.Context, hc *http.Client, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode reply: %w", method, url, err)
		}
	}
	return nil
}

func (n *nomad) prepare(ctx context.Context) error { return nil }

func (n *nomad) job(id string) map[string]any {
	return map[string]any{"Job": map[string]any{
		"ID": id, "Name": id, "Type": "service", "Datacenters": []string{"dc1"},
		"TaskGroups": []any{map[string]any{
			"Name": "g", "Count": 1,
			// The default (300 MB each) would not fit 50 tasks on a small disk.
			"EphemeralDisk": map[string]any{"SizeMB": 10},
			"Tasks": []any{map[string]any{
				"Name": "t", "Driver": "raw_exec",
				"Config":    map[string]any{"command": "/bin/sleep", "args": []string{"3600"}},
				"Resources": map[string]any{"CPU": 20, "MemoryMB": 16},
			}},
		}},
	}}
}

func (n *nomad) jobID(batch, name string) string { return "peers-" + batch + "-" + name }

func (n *nomad) submit(ctx context.Context, batch string, names []string) error {
	for _, name := range names {
		if err := n.call(ctx, "PUT", "/jobs", n.job(n.jobID(batch, name)), nil); err != nil {
			return fmt.Errorf("register job %s: %w", name, err)
		}
	}
	return proc.PollFor(ctx, 2*time.Minute, 10*time.Millisecond, func() error {
		running, err := n.running(ctx, "peers-"+batch+"-")
		if err != nil {
			return err
		}
		if running < len(names) {
			return fmt.Errorf("%d/%d allocations running", running, len(names))
		}
		return nil
	})
}

// running counts the running allocations of jobs whose ID starts with prefix.
func (n *nomad) running(ctx context.Context, prefix string) (int, error) {
	var allocs []struct{ JobID, ClientStatus string }
	if err := n.call(ctx, "GET", "/allocations?prefix=", nil, &allocs); err != nil {
		return 0, err
	}
	c := 0
	for _, a := range allocs {
		if strings.HasPrefix(a.JobID, prefix) && a.ClientStatus == "running" {
			c++
		}
	}
	return c, nil
}

func (n *nomad) remove(ctx context.Context, batch string, names []string) error {
	for _, name := range names {
		if err := n.call(ctx, "DELETE", "/job/"+n.jobID(batch, name)+"?purge=true", nil, nil); err != nil {
			return fmt.Errorf("deregister job %s: %w", name, err)
		}
	}
	return proc.PollFor(ctx, 2*time.Minute, 50*time.Millisecond, func() error {
		running, err := n.running(ctx, "peers-"+batch+"-")
		if err != nil {
			return err
		}
		if running > 0 {
			return fmt.Errorf("%d allocations still running", running)
		}
		return nil
	})
}

func (n *nomad) writeConfigs(ctx context.Context, prefix string, count int) error {
	for i := 0; i < count; i++ {
		path := fmt.Sprintf("peers/%s-%d", prefix, i)
		v := map[string]any{"Namespace": "default", "Path": path, "Items": map[string]string{"k": "v"}}
		if err := n.call(ctx, "PUT", "/var/"+path, v, nil); err != nil {
			return fmt.Errorf("put variable %s: %w", path, err)
		}
	}
	return nil
}

func (n *nomad) usage() procSet {
	if n.d == nil {
		return procSet{}
	}
	return procSet{roots: []int{n.d.PID()}}
}

func (n *nomad) stop() {
	left := n.usage().pids()
	n.d.StopWithin(30 * time.Second)
	killPIDs(left)
	unmountUnder(n.dir)
}
