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

	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/internal/testio"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// buildBinary builds this package's command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edge-controlplane")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// daemon is the binary started by a test, with its output.
type daemon struct {
	cmd            *exec.Cmd
	stdout, stderr *testio.SyncBuffer
	done           chan struct{}
}

func startDaemon(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), stdout: &testio.SyncBuffer{}, stderr: &testio.SyncBuffer{}, done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("%v\nstdout:\n%s\nstderr:\n%s", args, d.stdout, d.stderr)
		}
	})
	return d
}

// stop sends SIGTERM and waits for a clean exit: the shutdown logs too.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30s of SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// readyURL waits for the ready line and returns its NATS URL.
func (d *daemon) readyURL(t *testing.T) string {
	t.Helper()
	var url string
	eventually(t, 60*time.Second, func() error {
		select {
		case <-d.done:
			t.Fatalf("exited before ready")
		default:
		}
		for _, f := range strings.Fields(d.stdout.String()) {
			if strings.HasPrefix(f, "nats://") {
				url = f
				return nil
			}
		}
		return fmt.Errorf("no ready line yet")
	})
	return url
}

// waitLogged waits until the daemon's stderr holds msg.
func (d *daemon) waitLogged(t *testing.T, msg string) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		if !strings.Contains(d.stderr.String(), msg) {
			return fmt.Errorf("no %q yet", msg)
		}
		return nil
	})
}

// jsonLevels checks that every line is a JSON object with a level and
// returns the level of each message.
func jsonLevels(t *testing.T, log string) map[string]string {
	t.Helper()
	levels := map[string]string{}
	for _, l := range testio.Lines(log) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("not a JSON object: %q (%v)", l, err)
			continue
		}
		level, _ := rec["level"].(string)
		msg, _ := rec["msg"].(string)
		if level == "" || msg == "" || rec["time"] == nil {
			t.Errorf("JSON record without time, level or msg: %q", l)
		}
		levels[msg] = level
	}
	return levels
}

// TestLogFlagsCoverEveryLine runs the binary and checks that --log-format
// and --log-level hold for every line on stderr, the controllers' (which
// log through slog.Default) included.
func TestLogFlagsCoverEveryLine(t *testing.T) {
	bin := buildBinary(t)
	run := func(t *testing.T, format, level string) *daemon {
		return startDaemon(t, bin, "--dev", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--log-format", format, "--log-level", level)
	}
	const leaderMsg, stoppedMsg = "became leader: starting controllers", "stopped leading: controllers stopped"

	t.Run("json-warn", func(t *testing.T) {
		d := run(t, "json", "warn")
		url := d.readyURL(t)
		// Wait until the controllers run (they hold the lease), so that
		// their start and (on SIGTERM) stop would be logged at INFO.
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			kv, err := js.KeyValue(ctx, messaging.BucketLeader)
			if err != nil {
				return err
			}
			_, err = kv.Get(ctx, messaging.LeaderKey(controllers.LeaderLease))
			return err
		})
		d.stop(t)
		levels := jsonLevels(t, d.stderr.String())
		for msg, level := range levels {
			if level != "WARN" && level != "ERROR" {
				t.Errorf("%s line at --log-level warn: %q", level, msg)
			}
		}
		if levels["NATS authentication off (--dev): every client may do everything"] != "WARN" {
			t.Errorf("the --dev warning is missing: %v", levels)
		}
	})

	t.Run("json-info", func(t *testing.T) {
		d := run(t, "json", "info")
		d.readyURL(t)
		d.waitLogged(t, leaderMsg)
		d.stop(t)
		levels := jsonLevels(t, d.stderr.String())
		for _, msg := range []string{leaderMsg, stoppedMsg, "NATS server started"} {
			if levels[msg] != "INFO" {
				t.Errorf("%q: level %q, want INFO", msg, levels[msg])
			}
		}
	})

	t.Run("text-info", func(t *testing.T) {
		d := run(t, "text", "info")
		d.readyURL(t)
		d.waitLogged(t, leaderMsg)
		d.stop(t)
		for _, l := range testio.Lines(d.stderr.String()) {
			if !strings.HasPrefix(l, "time=") || !strings.Contains(l, " level=") || !strings.Contains(l, " msg=") {
				t.Errorf("not a text (logfmt) record: %q", l)
			}
		}
		for _, msg := range []string{leaderMsg, stoppedMsg, "NATS server started"} {
			if want := fmt.Sprintf("level=INFO msg=%q", msg); !strings.Contains(d.stderr.String(), want) {
				t.Errorf("no line with %s", want)
			}
		}
	})

	t.Run("bad-values", func(t *testing.T) {
		for _, tc := range []struct{ flag, value string }{{"--log-format", "xml"}, {"--log-level", "loud"}} {
			dataDir := filepath.Join(t.TempDir(), "data")
			cmd := exec.Command(bin, "--dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, tc.flag, tc.value)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("%s %s: %v, want exit code 1\n%s", tc.flag, tc.value, err, out)
			}
			want := fmt.Sprintf("edge-controlplane: %s %q: want ", tc.flag, tc.value)
			if !strings.HasPrefix(string(out), want) || len(testio.Lines(string(out))) != 1 {
				t.Errorf("%s %s: output %q, want one line starting %q", tc.flag, tc.value, out, want)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("%s %s: the data dir was created (%v): the flags must be checked first", tc.flag, tc.value, err)
			}
		}
	})
}
