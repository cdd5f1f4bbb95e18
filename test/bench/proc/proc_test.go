package proc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDaemonStartStop(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sleep.log")
	d, err := Start(log, []string{"PROC_TEST=1"}, "sh", "-c", "echo up nats://127.0.0.1:4 $PROC_TEST; exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url, err := WaitURL(ctx, d, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if url != "nats://127.0.0.1:4" {
		t.Fatalf("URL %q, want nats://127.0.0.1:4", url)
	}
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), " 1\n") {
		t.Fatalf("env not passed: log %q", b)
	}
	if err := d.Exited(); err != nil {
		t.Fatalf("running daemon reported as exited: %v", err)
	}
	if n := RSSKiB(d.PID()); n <= 0 {
		t.Fatalf("RSS of sleep %d KiB", n)
	}
	t0 := time.Now()
	d.StopWithin(5 * time.Second)
	if el := time.Since(t0); el > 4*time.Second {
		t.Fatalf("sleep took %s to stop on SIGTERM", el)
	}
	if err := d.Exited(); err == nil || !strings.Contains(err.Error(), "signal: terminated") {
		t.Fatalf("after stop, Exited = %v", err)
	}
	if n := RSSKiB(d.PID()); n != -1 {
		t.Fatalf("RSS of a reaped process %d, want -1", n)
	}
	var nilD *Daemon
	nilD.Stop()
}

func TestStopKillsAfterGrace(t *testing.T) {
	d, err := Start(filepath.Join(t.TempDir(), "trap.log"), nil, "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done")
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the trap is set, or SIGTERM could end sh before it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Poll(ctx, 10*time.Millisecond, func() error {
		if b, _ := os.ReadFile(d.Log); !strings.Contains(string(b), "ready") {
			return os.ErrNotExist
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	d.StopWithin(300 * time.Millisecond)
	if el := time.Since(t0); el < 300*time.Millisecond {
		t.Fatalf("stopped after %s, before the grace", el)
	}
	if err := d.Exited(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Exited = %v, want killed", err)
	}
}

func TestWaitURLFailsWhenDaemonEnds(t *testing.T) {
	d, err := Start(filepath.Join(t.TempDir(), "false.log"), nil, "sh", "-c", "echo boom; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = WaitURL(ctx, d, 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("WaitURL = %v, want the exit and the log", err)
	}
	if ctx.Err() != nil {
		t.Fatal("WaitURL waited for the deadline")
	}
}

func TestOwnMemoryAndCPU(t *testing.T) {
	pid := os.Getpid()
	if n := RSSKiB(pid); n <= 0 {
		t.Fatalf("own RSS %d", n)
	}
	if n := HWMKiB(pid); n <= 0 {
		t.Fatalf("own VmHWM %d", n)
	}
	if _, err := os.Stat("/proc/self/smaps_rollup"); err == nil {
		if n := PSSKiB(pid); n <= 0 {
			t.Fatalf("own PSS %d", n)
		}
	}
	// Burn some CPU so that at least one clock tick is counted.
	deadline := time.Now().Add(100 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	if c := CPUTime(pid); c <= 0 {
		t.Fatalf("own CPU time %s", c)
	}
	if KiB(pid, "/status", "NoSuchKey:") != -1 || KiB(-5, "/status", "VmRSS:") != -1 {
		t.Fatal("missing key or pid not -1")
	}
}

func TestFreePortsAndSleep(t *testing.T) {
	ps, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v", ps)
		}
		seen[p] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled context = %v", err)
	}
	if err := PollFor(context.Background(), 50*time.Millisecond, 10*time.Millisecond, func() error { return os.ErrNotExist }); err == nil || !strings.Contains(err.Error(), "file does not exist") {
		t.Fatalf("PollFor = %v", err)
	}
}
