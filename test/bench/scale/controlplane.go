package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/sim"
	"github.com/edgeorch/edgeorch/test/bench/proc"
)

// startChild starts this program again with args (a role), its stderr
// ours, and returns its stdin and a scanner of its stdout.
func startChild(ctx context.Context, what string, args ...string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = os.Stderr
	// Gone with this process, whatever way it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start %s: %w", what, err)
	}
	return cmd, stdin, bufio.NewScanner(stdout), nil
}

// cpProc is the child process running the control plane, so that its
// memory and CPU are measured apart from the harness's own watches, lists
// and decoded objects.
type cpProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
	lines chan string
	done  chan error
}

// startControlPlane starts the control plane (role controlplane) and
// returns once it serves.
func startControlPlane(ctx context.Context, cfg config) (*cpProc, error) {
	cmd, stdin, sc, err := startChild(ctx, "control plane", "-role=controlplane", "-heartbeat="+cfg.heartbeat.String(),
		"-sync-always="+strconv.FormatBool(cfg.syncAlways), "-cpuprofile="+cfg.cpuProfile,
		"-memprofile="+cfg.memProfile, "-peakprofile="+cfg.peakProfile)
	if err != nil {
		return nil, err
	}
	p := &cpProc{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan error, 1)}
	if !sc.Scan() {
		err := cmd.Wait()
		return nil, fmt.Errorf("control plane exited before serving: %v", err)
	}
	line := sc.Text()
	if p.url = strings.TrimPrefix(line, "url "); p.url == line {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("control plane said %q", line)
	}
	go func() {
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	return p, nil
}

func (p *cpProc) pid() int { return p.cmd.Process.Pid }

// err reports whether the control plane exited.
func (p *cpProc) err() error {
	select {
	case err := <-p.done:
		p.done <- err
		if err == nil {
			err = errors.New("exited")
		}
		return fmt.Errorf("control plane: %w", err)
	default:
		return nil
	}
}

// heapInUse asks the control plane for its Go heap in use, and to write
// its heap profile when it was given -memprofile.
func (p *cpProc) heapInUse(ctx context.Context) (uint64, error) {
	if _, err := io.WriteString(p.stdin, "heap\n"); err != nil {
		return 0, fmt.Errorf("ask the control plane for its heap: %w", err)
	}
	select {
	case line, ok := <-p.lines:
		if !ok {
			return 0, p.err()
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(line, "heap "), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("control plane said %q for its heap", line)
		}
		return n, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// stop closes the control plane's stdin (it closes and exits) and waits.
func (p *cpProc) stop() {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// runControlPlane is the control plane's process: it prints its URL,
// answers "heap" lines on stdin and exits when stdin closes.
func runControlPlane(ctx context.Context, cfg config) error {
	c, err := sim.New(ctx, sim.Options{
		NodeGrace:  4 * cfg.heartbeat,
		SyncAlways: cfg.syncAlways,
		NoWait:     true,
		// Pods stay where they are while the machine is saturated.
		ControllerOptions: controllers.Options{NodeUnreachableGrace: time.Hour},
	})
	if err != nil {
		return err
	}
	if cfg.peakProfile != "" {
		go profilePeaks(ctx, cfg.peakProfile)
	}
	fmt.Printf("url %s\n", c.URL)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if phaseProfileCommand(sc.Text()) {
			continue
		}
		if sc.Text() != "heap" {
			continue
		}
		if cfg.memProfile != "" {
			if err := writeHeapProfile(cfg.memProfile); err != nil {
				fmt.Fprintln(os.Stderr, "scale bench:", err)
			}
		}
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		fmt.Printf("heap %d\n", ms.HeapInuse)
	}
	return c.Close()
}

// profilePeaks writes a heap profile to path each time the process's RSS
// passes its last peak by 32 MiB (past 256 MiB), to see what lives at
// the peak rather than after it.
func profilePeaks(ctx context.Context, path string) {
	const step = 32 << 10 // KiB
	peak := 256 << 10
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rss := proc.RSSKiB(os.Getpid())
		if rss < peak+step {
			continue
		}
		peak = rss
		if err := writeHeapProfile(path); err != nil {
			fmt.Fprintln(os.Stderr, "scale bench:", err)
			return
		}
		fmt.Fprintf(os.Stderr, "    (control plane: heap profile at RSS %d MiB in %s; %s)\n", rss>>10, path, memClasses())
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	err = pprof.WriteHeapProfile(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}

// memClasses says where the Go runtime's memory is: live and dead heap
// objects, free heap spans not yet returned to the OS, stacks, the rest.
func memClasses() string {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(samples)
	v := func(i int) uint64 { return samples[i].Value.Uint64() }
	other := v(4) - v(5) - v(0) - v(1) - v(2) - v(3)
	return fmt.Sprintf("heap objects %d MiB (live after the last GC %d MiB), unused %d, free %d, stacks %d (%d goroutines), other %d MiB",
		v(0)>>20, v(6)>>20, v(1)>>20, v(2)>>20, v(3)>>20, v(7), other>>20)
}

// phaseProfileCommand runs a "cpu PATH" (start a CPU profile into PATH)
// or "cpustop" line of the harness (-phase-cpuprofile) and reports
// whether line was one.
func phaseProfileCommand(line string) bool {
	switch {
	case strings.HasPrefix(line, "cpu "):
		f, err := os.Create(strings.TrimPrefix(line, "cpu "))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale bench: phase cpu profile:", err)
		}
		return true
	case line == "cpustop":
		pprof.StopCPUProfile()
		return true
	}
	return false
}
