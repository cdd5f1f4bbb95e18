// Package proc holds what the benchmark harnesses under test/bench/ and
// test/peers/ share about the processes they start and measure: a daemon
// with its output in a log file, stopped with SIGTERM and then SIGKILL;
// polling until a condition holds; the memory (VmRSS, VmHWM, PSS) and CPU
// time of a pid read from /proc; free loopback ports; and the nats:// URL
// the control plane prints when it listens.
//
// Memory figures are in KiB, as /proc gives them; a figure that cannot be
// read is -1 (the process has gone, or the kernel has no smaps_rollup).
//
// It is not under test/bench/internal/ because test/peers uses it too.
package proc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Grace is how long Stop waits after SIGTERM before it kills the daemon.
const Grace = 10 * time.Second

// Daemon is a process a harness started, its standard output and error in
// a log file.
type Daemon struct {
	Cmd  *exec.Cmd
	Log  string // path of the log file
	done chan struct{}
}

// Start starts name with args, its output in a new file at logPath. env,
// when not nil, is added to the harness's own environment.
func Start(logPath string, env []string, name string, args ...string) (*Daemon, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file of %s: %w", filepath.Base(name), err)
	}
	// The child holds its own copy of the descriptor once started.
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &Daemon{Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	return d, nil
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.Cmd.Process.Pid }

// Exited returns an error with the tail of the log if the daemon has
// ended, nil while it runs.
func (d *Daemon) Exited() error {
	select {
	case <-d.done:
		b, _ := os.ReadFile(d.Log)
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		return fmt.Errorf("%s exited: %v\n%s", filepath.Base(d.Cmd.Path), d.Cmd.ProcessState, b)
	default:
		return nil
	}
}

// Stop sends SIGTERM and kills the daemon if it has not ended after Grace.
// A nil Daemon is fine.
func (d *Daemon) Stop() { d.StopWithin(Grace) }

// StopWithin sends SIGTERM and kills the daemon if it has not ended after
// grace. It returns once the process has been reaped.
func (d *Daemon) StopWithin(grace time.Duration) {
	if d == nil {
		return
	}
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = d.Cmd.Process.Kill()
		<-d.done
	}
}

// Poll calls f every interval until it returns nil, or ctx ends: then the
// error says so with f's last error.
func Poll(ctx context.Context, every time.Duration, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

// PollFor is Poll for at most d.
func PollFor(ctx context.Context, d, every time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return Poll(ctx, every, f)
}

// Sleep waits d, or less when ctx ends (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// KiB reads the number N of a "Key: N kB" (or "Key: N") line of
// /proc/<pid><file>, e.g. KiB(pid, "/status", "VmRSS:"); -1 when it
// cannot.
func KiB(pid int, file, key string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d%s", pid, file))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
			if f := strings.Fields(l); len(f) >= 2 {
				n, err := strconv.Atoi(f[1])
				if err != nil {
					return -1
				}
				return n
			}
		}
	}
	return -1
}

// RSSKiB is the resident set size of pid (VmRSS).
func RSSKiB(pid int) int { return KiB(pid, "/status", "VmRSS:") }

// HWMKiB is the peak resident set size of pid (VmHWM).
func HWMKiB(pid int) int { return KiB(pid, "/status", "VmHWM:") }

// PSSKiB is the proportional set size of pid (smaps_rollup): pages shared
// with other processes count for their share.
func PSSKiB(pid int) int { return KiB(pid, "/smaps_rollup", "Pss:") }

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// CPUTime is the user + system CPU time pid has used so far; 0 when it
// cannot be read.
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command (which may hold spaces and
	// parentheses): utime and stime are the 12th and 13th, in clock ticks.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// URLIn is the first nats:// URL in the log at path, "" when there is none
// yet.
func URLIn(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for _, w := range strings.Fields(sc.Text()) {
			if strings.HasPrefix(w, "nats://") {
				return w
			}
		}
	}
	return ""
}

// WaitURL polls d's log every interval until the control plane it runs
// prints its nats:// URL; it fails at once, with the log's tail, if d ends.
func WaitURL(ctx context.Context, d *Daemon, every time.Duration) (string, error) {
	for {
		if url := URLIn(d.Log); url != "" {
			return url, nil
		}
		if err := d.Exited(); err != nil {
			return "", fmt.Errorf("wait for the control plane's URL: %w", err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for the control plane's URL: %w (it printed none in %s)", ctx.Err(), d.Log)
		case <-time.After(every):
		}
	}
}
