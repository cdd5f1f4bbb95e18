package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/internal/testio"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// startControlPlane runs a control plane (no controllers, dev mode) in
// process until the test ends and returns its NATS URL.
func startControlPlane(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	urls := make(chan string, 1)
	cfg := controlplane.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"}
	go func() { done <- controlplane.Run(ctx, cfg, func(u string) { urls <- u }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	select {
	case u := <-urls:
		return u
	case err := <-done:
		t.Fatalf("control plane: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("control plane not ready after 60s")
	}
	return ""
}

// TestLogFlagsCoverEveryLine runs the agent binary against a control plane
// and checks that --log-format and --log-level hold for every line on
// stderr, and that bad values are refused naming the flag.
func TestLogFlagsCoverEveryLine(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "edge-agent")
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer bcancel()
	if out, err := exec.CommandContext(bctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	url := startControlPlane(t)
	nc, err := messaging.Connect(bctx, url, "test client")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	api := client.New(nc)

	// run starts the agent as node until the node is registered (its status
	// written, and logged at info), stops it with SIGTERM and returns its
	// stderr.
	run := func(t *testing.T, node, format, level string) string {
		t.Helper()
		var stdout, stderr testio.SyncBuffer
		cmd := exec.Command(bin, "--server", url, "--node-name", node, "--data-dir", t.TempDir(),
			"--heartbeat-interval", "1s", "--service-proxy=false", "--dns-addr=",
			"--ingress-http-port", "0", "--ingress-https-port", "0", "--release-startup-pages", "0",
			"--log-format", format, "--log-level", level)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		defer func() {
			cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("%v\nstdout:\n%s\nstderr:\n%s", cmd.Args, stdout.String(), stderr.String())
			}
		}()
		controllertest.Eventually(t, 60*time.Second, func() error {
			select {
			case <-done:
				t.Fatal("the agent exited")
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			obj, err := api.Get(ctx, "nodes", "", node)
			if err != nil {
				return err
			}
			// The node's status is written last by a registration.
			if n, ok := obj.(*manifests.Node); !ok || len(n.Status.Capacity) == 0 {
				return fmt.Errorf("node %s: no status yet", node)
			}
			if level != "warn" && !strings.Contains(stderr.String(), "node registered") {
				return fmt.Errorf("no %q logged yet", "node registered")
			}
			return nil
		})
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the agent did not stop within 30s of SIGTERM")
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM", code)
		}
		return stderr.String()
	}

	t.Run("json-warn", func(t *testing.T) {
		for _, l := range testio.Lines(run(t, "log-json-warn", "json", "warn")) {
			var rec struct{ Level, Msg string }
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Errorf("not a JSON object: %q (%v)", l, err)
			} else if rec.Level != "WARN" && rec.Level != "ERROR" {
				t.Errorf("%s line at --log-level warn: %q", rec.Level, l)
			}
		}
	})

	t.Run("json-info", func(t *testing.T) {
		levels := map[string]string{}
		for _, l := range testio.Lines(run(t, "log-json-info", "json", "info")) {
			var rec struct{ Level, Msg string }
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Errorf("not a JSON object: %q (%v)", l, err)
			}
			levels[rec.Msg] = rec.Level
		}
		for _, msg := range []string{"agent started", "node registered"} {
			if levels[msg] != "INFO" {
				t.Errorf("%q: level %q, want INFO", msg, levels[msg])
			}
		}
	})

	t.Run("text-info", func(t *testing.T) {
		log := run(t, "log-text-info", "text", "info")
		for _, l := range testio.Lines(log) {
			if !strings.HasPrefix(l, "time=") || !strings.Contains(l, " level=") || !strings.Contains(l, " msg=") {
				t.Errorf("not a text (logfmt) record: %q", l)
			}
		}
		for _, msg := range []string{"agent started", "node registered"} {
			if want := fmt.Sprintf("level=INFO msg=%q", msg); !strings.Contains(log, want) {
				t.Errorf("no line with %s", want)
			}
		}
	})

	t.Run("bad-values", func(t *testing.T) {
		for _, tc := range []struct{ flag, value string }{{"--log-format", "xml"}, {"--log-level", "loud"}} {
			dataDir := filepath.Join(t.TempDir(), "data")
			cmd := exec.Command(bin, "--server", url, "--node-name", "log-bad", "--data-dir", dataDir, tc.flag, tc.value)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("%s %s: %v, want exit code 1\n%s", tc.flag, tc.value, err, out)
			}
			want := fmt.Sprintf("edge-agent: %s %q: want ", tc.flag, tc.value)
			if !strings.HasPrefix(string(out), want) || len(testio.Lines(string(out))) != 1 {
				t.Errorf("%s %s: output %q, want one line starting %q", tc.flag, tc.value, out, want)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("%s %s: the data dir was created (%v): the flags must be checked first", tc.flag, tc.value, err)
			}
		}
	})
}
