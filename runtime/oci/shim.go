package oci

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/logfile"
)

// shimEnv marks a process started as a shim (spawnShim): it reports on
// fd 3 and reads its shimConfig from fd 4.
const shimEnv = "EDGEORCH_OCI_SHIM"

// shimConfig is what a shim runs.
type shimConfig struct {
	Dir         string `json:"dir"` // the container's state directory
	Runc        string `json:"runc"`
	RuncRoot    string `json:"runcRoot"`
	ID          string `json:"id"`
	Bundle      string `json:"bundle"`
	LogPath     string `json:"logPath"`
	LogMaxBytes int64  `json:"logMaxBytes"`
	LogMaxFiles int    `json:"logMaxFiles"`
}

// shimReport is the one message a shim sends back on its status pipe.
type shimReport struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// Exit codes and reasons of containers that could not start.
const (
	exitStartError    = 128
	reasonStartError  = "StartError"
	exitUnknown       = 255
	drainOutputWithin = 2 * time.Second
)

// MaybeRunShim runs the container shim when the process was started as one
// by this package, and never returns then; otherwise it returns at once.
// Binaries that embed runtime/oci call it first thing in main (tests: in
// TestMain).
func MaybeRunShim() {
	if cfg := os.Getenv(execEnv); cfg != "" {
		os.Unsetenv(execEnv)
		runExecTTY(cfg, os.NewFile(3, "status"))
		os.Exit(0)
	}
	if os.Getenv(shimEnv) == "" {
		return
	}
	os.Unsetenv(shimEnv)
	status := os.NewFile(3, "status")
	cfg, ok, err := readShimConfig(os.NewFile(4, "config"))
	switch {
	case err != nil:
		report(status, shimReport{Error: err.Error()})
		os.Exit(1)
	case !ok:
		// A spare shim that was not needed.
		os.Exit(0)
	}
	// The shim's own diagnostics (and a Go panic) go to shim.log.
	if f, err := os.OpenFile(filepath.Join(cfg.Dir, shimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
		_ = unix.Dup3(int(f.Fd()), 1, 0)
		_ = unix.Dup3(int(f.Fd()), 2, 0)
		f.Close()
	}
	if err := runShim(cfg, status); err != nil {
		fmt.Fprintf(os.Stderr, "%s shim: %v\n", time.Now().Format(time.RFC3339Nano), err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runShim creates and starts the container with runc, reports back on
// status, copies its output to the log and records how it exits.
func runShim(cfg shimConfig, status *os.File) error {
	s := &shim{cfg: cfg, dir: cfg.Dir}
	pid, err := s.start()
	if err != nil {
		werr := writeJSON(filepath.Join(s.dir, exitFile), startError(err.Error()))
		report(status, shimReport{Error: err.Error()})
		return errors.Join(err, werr)
	}
	report(status, shimReport{Pid: pid})
	return s.wait(pid)
}

func report(status *os.File, r shimReport) {
	if status == nil {
		return
	}
	_ = json.NewEncoder(status).Encode(r)
	status.Close()
}

type shim struct {
	cfg     shimConfig
	dir     string
	logs    *logfile.Writer
	copying sync.WaitGroup
	cgroups cgroupDirs
}

// runc runs one runc command and returns its error with runc's message.
func (s *shim) runc(stdout, stderr io.Writer, args ...string) error {
	base := []string{"--root", s.cfg.RuncRoot, "--log", filepath.Join(s.dir, "runc.log"), "--log-format", "json"}
	cmd := exec.Command(s.cfg.Runc, append(base, args...)...)
	var errBuf bytes.Buffer
	cmd.Stdout = stdout
	if stderr == nil {
		stderr = &errBuf
	}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		msg := s.runcError()
		if msg == "" {
			msg = strings.TrimSpace(errBuf.String())
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("runc %s: %s", args[0], msg)
	}
	return nil
}

// runcError is the last error runc logged.
func (s *shim) runcError() string {
	f, err := os.Open(filepath.Join(s.dir, "runc.log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			last = e.Msg
		}
	}
	return last
}

// start runs the container (`runc run --detach`) with output pipes the
// shim owns and returns its init pid.
func (s *shim) start() (int, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("become child subreaper: %w", err)
	}
	var stdout, stderr io.Writer = io.Discard, io.Discard
	if s.cfg.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(s.cfg.LogPath), 0o750); err != nil {
			return 0, fmt.Errorf("log directory: %w", err)
		}
		w, err := logfile.Open(s.cfg.LogPath, s.cfg.LogMaxBytes, s.cfg.LogMaxFiles)
		if err != nil {
			return 0, err
		}
		s.logs, stdout, stderr = w, w.Stream(logfile.Stdout), w.Stream(logfile.Stderr)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("stderr pipe: %w", err)
	}
	s.copying.Add(2)
	go s.copy(stdout, outR)
	go s.copy(stderr, errR)
	pidFile := filepath.Join(s.dir, "init.pid")
	// One runc process creates and starts the container (`runc create`
	// then `runc start` would cost a second runc start-up).
	rerr := s.runc(outW, errW, "run", "--detach", "--bundle", s.cfg.Bundle, "--pid-file", pidFile, s.cfg.ID)
	// runc returns once the container's process runs.
	startedAt := time.Now()
	// The container's init holds its own copies of the write ends.
	outW.Close()
	errW.Close()
	if rerr != nil {
		s.drain()
		return 0, rerr
	}
	pid := 0
	abort := func(err error) (int, error) {
		if pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
			s.reap(pid)
		}
		s.drain()
		return 0, err
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return abort(fmt.Errorf("read pid file: %w", err))
	}
	if pid, err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil {
		return abort(fmt.Errorf("pid file: %w", err))
	}
	// The init is the shim's child (runc exited) and is not reaped before
	// wait: even one that already exited still shows its cgroups.
	if s.cgroups, err = findCgroups(pid); err != nil {
		return abort(err)
	}
	shimStart, _ := processStart(os.Getpid())
	// Not synced: after a power cut the container is gone, and its status
	// is worked out from runc.
	if err := replaceJSON(filepath.Join(s.dir, startedFile), startedRecord{
		Pid: pid, ShimPid: os.Getpid(), ShimStart: shimStart, StartedAt: startedAt, Cgroups: s.cgroups,
	}); err != nil {
		return abort(err)
	}
	return pid, nil
}

func (s *shim) copy(w io.Writer, r *os.File) {
	defer s.copying.Done()
	_, _ = io.Copy(w, r)
	r.Close()
}

// drain waits (bounded) for the output pipes to close and closes the log.
func (s *shim) drain() {
	done := make(chan struct{})
	go func() { s.copying.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainOutputWithin):
	}
	if s.logs != nil {
		_ = s.logs.Close()
	}
}

// reap waits for the container's init, which was reparented to the shim,
// and returns its wait status; ok is false when it could not be waited for.
func (s *shim) reap(pid int) (ws unix.WaitStatus, ok bool) {
	for {
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			// Not our child (should not happen): wait for it to go away.
			for unix.Kill(pid, 0) == nil {
				time.Sleep(100 * time.Millisecond)
			}
			return ws, false
		case wpid == pid:
			return ws, true
		}
	}
}

// wait records the exit of the running container and returns.
func (s *shim) wait(pid int) error {
	ws, ok := s.reap(pid)
	finished := time.Now()
	s.drain()
	rec := exitRecord{ExitCode: exitUnknown, FinishedAt: finished, OOMKilled: oomKilled(s.cgroups)}
	switch {
	case !ok:
		rec.Reason, rec.Message = runtime.ReasonError, "exit status unknown: the container's process was not a child of its shim"
	case ws.Exited():
		rec.ExitCode = int32(ws.ExitStatus())
	case ws.Signaled():
		rec.ExitCode = 128 + int32(ws.Signal())
	}
	return writeJSON(filepath.Join(s.dir, exitFile), rec)
}

// processStart is the start time of a process (field 22 of
// /proc/<pid>/stat), which tells it apart from a later one with the same
// pid. A zombie counts as gone.
func processStart(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	// The command name (field 2) may hold spaces; fields after it do not.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}
