package edgeagent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// notifySocket is a stand-in for systemd's notification socket: a real
// unixgram socket in t.TempDir().
func notifySocket(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

// readNotify returns the next datagram; the deadline only bounds a failing
// test.
func readNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

func TestSDNotifyAgentReadyWatchdogStopping(t *testing.T) {
	conn, path := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	cp := startControlPlane(t)
	ag := startAgent(t, cp.url, t.TempDir())

	if got := readNotify(t, conn); got != "READY=1\nSTATUS=running" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	for i := range 3 {
		if got := readNotify(t, conn); got != "WATCHDOG=1" {
			t.Fatalf("notification %d %q, want WATCHDOG=1", i, got)
		}
	}
	ag.cancel()
	for {
		got := readNotify(t, conn)
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("notification while stopping %q", got)
		}
	}
}

func TestSDNotifyWithholdsWatchdogWhileUnhealthy(t *testing.T) {
	conn, path := notifySocket(t)
	n, err := newSDNotifier(path)
	if err != nil {
		t.Fatal(err)
	}
	var failure atomic.Pointer[error]
	check := func(context.Context) error {
		if e := failure.Load(); e != nil {
			return *e
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runNotify(ctx, n, tick, check, slog.New(slog.DiscardHandler))
	}()
	defer func() {
		cancel()
		<-done
	}()

	if got := readNotify(t, conn); got != "READY=1\nSTATUS=running" {
		t.Fatalf("first notification %q", got)
	}
	tick <- time.Now()
	if got := readNotify(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("healthy tick: %q", got)
	}
	stuck := errors.New("state database stuck")
	failure.Store(&stuck)
	tick <- time.Now()
	if got := readNotify(t, conn); got != "STATUS=unhealthy: state database stuck" {
		t.Fatalf("unhealthy tick: %q, want no WATCHDOG=1 and the reason", got)
	}
	failure.Store(nil)
	tick <- time.Now()
	if got := readNotify(t, conn); got != "WATCHDOG=1\nSTATUS=running" {
		t.Fatalf("recovered tick: %q", got)
	}
	tick <- time.Now()
	if got := readNotify(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("healthy tick: %q", got)
	}
	cancel()
	if got := readNotify(t, conn); got != "STOPPING=1" {
		t.Fatalf("on the way out: %q", got)
	}
}

func TestSDNotifyEnv(t *testing.T) {
	if n, err := newSDNotifier(""); n != nil || err != nil {
		t.Errorf("no NOTIFY_SOCKET: %v, %v; want nil, nil", n, err)
	}
	if _, err := newSDNotifier("run/notify"); err == nil {
		t.Error("relative NOTIFY_SOCKET accepted")
	}
	if n, err := newSDNotifier("@abstract"); n == nil || err != nil {
		t.Errorf("abstract NOTIFY_SOCKET: %v, %v", n, err)
	}
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, false},
		{"1000", self, time.Millisecond, false},
		{"1000", strconv.Itoa(os.Getpid() + 1), 0, false},
		{"abc", "", 0, true},
		{"0", "", 0, true},
		{"-5", "", 0, true},
		{"1000", "me", 0, true},
	} {
		got, err := watchdogInterval(tc.usec, tc.pid)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("watchdogInterval(%q, %q) = %v, %v; want %v, error %v", tc.usec, tc.pid, got, err, tc.want, tc.err)
		}
	}
}
