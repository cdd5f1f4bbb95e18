package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeorch/edgeorch/runtime"
)

// Exec implements runtime.Execer with `runc exec`: the command runs with the
// container's process settings (user, environment, capabilities) and the
// request's stdio. It returns the command's exit code (128+signal when
// killed by one).
func (r *Runtime) Exec(ctx context.Context, containerID string, req runtime.ExecRequest) (int, error) {
	c, err := r.container(containerID)
	if err != nil {
		return 0, fmt.Errorf("exec: %w", err)
	}
	st, _, err := r.status(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", containerID, err)
	}
	if st.State != runtime.StateRunning {
		return 0, fmt.Errorf("exec in container %s: %w: container is %s", containerID, runtime.ErrState, st.State)
	}
	if len(req.Cmd) == 0 {
		return 0, fmt.Errorf("exec in container %s: %w: empty command", containerID, runtime.ErrInvalid)
	}
	if req.TTY {
		return r.execTTY(ctx, containerID, req)
	}
	args := []string{"--root", filepath.Join(r.root, runcDir), "exec", containerID}
	stdin, closeStdin, err := stdinPipe(req.Stdin)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", containerID, err)
	}
	defer closeStdin()
	cmd := exec.CommandContext(ctx, r.runc, append(args, req.Cmd...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, req.Stdout, req.Stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case ctx.Err() != nil:
		return 0, fmt.Errorf("exec in container %s: %w", containerID, ctx.Err())
	case errors.As(err, &exitErr):
		// runc exits with the command's status (128+signal for a signal).
		return exitErr.ExitCode(), nil
	}
	return 0, fmt.Errorf("exec in container %s: runc exec: %w", containerID, err)
}

// execEnv marks a process started as the helper of a TTY exec; its value
// is the JSON execTTYConfig.
const execEnv = "EDGEORCH_OCI_EXEC_TTY"

// execTTYConfig is what a TTY exec helper runs.
type execTTYConfig struct {
	Runc     string   `json:"runc"`
	RuncRoot string   `json:"runcRoot"`
	ID       string   `json:"id"`
	Cmd      []string `json:"cmd"`
}

// execTTYReport is what the helper reports on its status pipe.
type execTTYReport struct {
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
}

// execTTY runs a command with a terminal. runc hands a terminal over a
// console socket only to detached processes (`runc exec -d -t`), whose exit
// status only a subreaper sees; so a helper (this binary re-executed, see
// MaybeRunShim) does it: it becomes a subreaper, copies its stdin and
// stdout to and from the terminal, and reports the exit code.
func (r *Runtime) execTTY(ctx context.Context, containerID string, req runtime.ExecRequest) (int, error) {
	fail := func(err error) (int, error) {
		return 0, fmt.Errorf("exec in container %s: %w", containerID, err)
	}
	cfg, err := json.Marshal(execTTYConfig{Runc: r.runc, RuncRoot: filepath.Join(r.root, runcDir), ID: containerID, Cmd: req.Cmd})
	if err != nil {
		return fail(err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer statusR.Close()
	stdin, closeStdin, err := stdinPipe(req.Stdin)
	if err != nil {
		statusW.Close()
		return fail(err)
	}
	defer closeStdin()
	var helperErr bytes.Buffer
	cmd := exec.CommandContext(ctx, "/proc/self/exe", "oci-exec-tty", containerID)
	cmd.Env = append(withoutEnv(withoutEnv(os.Environ(), shimEnv), execEnv), execEnv+"="+string(cfg))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, req.Stdout, &helperErr
	cmd.ExtraFiles = []*os.File{statusW}
	err = cmd.Start()
	statusW.Close()
	if err != nil {
		return fail(fmt.Errorf("start exec helper: %w", err))
	}
	data, _ := io.ReadAll(statusR)
	werr := cmd.Wait()
	var rep execTTYReport
	switch {
	case ctx.Err() != nil:
		return fail(ctx.Err())
	case len(bytes.TrimSpace(data)) == 0:
		return fail(fmt.Errorf("exec helper: %v: %s", werr, strings.TrimSpace(helperErr.String())))
	case json.Unmarshal(data, &rep) != nil:
		return fail(fmt.Errorf("exec helper: bad report %q", data))
	case rep.Error != "":
		return fail(errors.New(rep.Error))
	}
	return rep.ExitCode, nil
}

// stdinPipe feeds r to a pipe; the returned function closes it. A nil r
// is an empty input.
func stdinPipe(r io.Reader) (*os.File, func(), error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("stdin pipe: %w", err)
	}
	if r == nil {
		pw.Close()
		return pr, func() { pr.Close() }, nil
	}
	go func() {
		_, _ = io.Copy(pw, r)
		pw.Close()
	}()
	// The copier may stay blocked on r; closing the read end ends its
	// next write.
	return pr, func() { pr.Close() }, nil
}

// runExecTTY is the TTY exec helper.
func runExecTTY(cfgJSON string, status *os.File) {
	rep := execTTYReport{}
	code, err := execTTYHelper(cfgJSON)
	if err != nil {
		rep.Error = err.Error()
	}
	rep.ExitCode = code
	_ = json.NewEncoder(status).Encode(rep)
	status.Close()
}

func execTTYHelper(cfgJSON string) (int, error) {
	var cfg execTTYConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return 0, fmt.Errorf("exec helper config: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("become child subreaper: %w", err)
	}
	dir, err := os.MkdirTemp("", "oci-console-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return 0, fmt.Errorf("console socket: %w", err)
	}
	defer l.Close()
	consoles := make(chan *os.File, 1)
	go func() {
		f, _ := receiveConsole(l)
		consoles <- f
	}()
	pidFile := filepath.Join(dir, "pid")
	args := []string{"--root", cfg.RuncRoot, "exec", "-d", "-t", "--console-socket", sock, "--pid-file", pidFile, cfg.ID}
	out, err := exec.Command(cfg.Runc, append(args, cfg.Cmd...)...).CombinedOutput()
	if err != nil {
		l.Close()
		return 0, fmt.Errorf("runc exec: %w: %s", err, strings.TrimSpace(string(out)))
	}
	console := <-consoles
	if console == nil {
		return 0, errors.New("runc exec: no terminal received")
	}
	defer console.Close()
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("runc exec: pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("runc exec: pid file: %w", err)
	}
	go func() { _, _ = io.Copy(console, os.Stdin) }()
	copied := make(chan struct{})
	go func() {
		// Reading the terminal ends with EIO once the process exits.
		_, _ = io.Copy(os.Stdout, console)
		close(copied)
	}()
	var ws unix.WaitStatus
	for {
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait for the exec'd process: %w", err)
		}
		if wpid == pid {
			break
		}
	}
	select {
	case <-copied:
	case <-time.After(drainOutputWithin):
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// receiveConsole accepts runc's connection on the console socket and
// returns the terminal master it sends (SCM_RIGHTS).
func receiveConsole(l *net.UnixListener) (*os.File, error) {
	conn, err := l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(name, oob)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: bad control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("console socket: no terminal received: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
