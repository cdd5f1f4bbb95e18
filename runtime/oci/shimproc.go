package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// A shim is this binary re-executed (MaybeRunShim). Its start (the Go
// runtime and every package's init) costs several milliseconds, so once a
// runtime has started a container it keeps one spare shim waiting for its
// next container: the spare blocks reading its configuration from a pipe
// and exits, doing nothing, when the pipe closes unwritten (Runtime.Close,
// or the agent's exit). A runtime that never starts a container keeps no
// spare.

// shimProc is a started shim waiting for its configuration.
type shimProc struct {
	cmd    *exec.Cmd
	config *os.File // write end: the shim reads its shimConfig until EOF
	status *os.File // read end: the shim's one shimReport
}

// spawnShim starts a shim; it waits for its configuration.
func spawnShim() (*shimProc, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("shim config pipe: %w", err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		return nil, fmt.Errorf("shim status pipe: %w", err)
	}
	cmd := exec.Command("/proc/self/exe", "oci-shim")
	cmd.Env = append(withoutEnv(os.Environ(), shimEnv), shimEnv+"=1")
	cmd.Dir = "/"
	// Stdout and stderr are /dev/null until the shim knows its container's
	// shim.log.
	cmd.ExtraFiles = []*os.File{statusW, cfgR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	statusW.Close()
	cfgR.Close()
	if err != nil {
		cfgW.Close()
		statusR.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	// The shim outlives its start; reap it when it ends.
	go func() { _ = cmd.Wait() }()
	return &shimProc{cmd: cmd, config: cfgW, status: statusR}, nil
}

// send hands the shim its configuration.
func (p *shimProc) send(cfg shimConfig) error {
	data, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode shim config: %w", err)
	}
	_, err = p.config.Write(data)
	if cerr := p.config.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("send shim config: %w", err)
	}
	return nil
}

// discard releases an unused shim: it exits on the closed pipe.
func (p *shimProc) discard() {
	p.config.Close()
	p.status.Close()
}

// takeShim returns the spare shim with its configuration sent, else a new
// one.
func (r *Runtime) takeShim(cfg shimConfig) (*shimProc, error) {
	r.shimMu.Lock()
	p := r.spare
	r.spare = nil
	r.shimMu.Unlock()
	if p != nil {
		if err := p.send(cfg); err == nil {
			return p, nil
		}
		// The spare died (killed?): start another.
		p.discard()
	}
	p, err := spawnShim()
	if err != nil {
		return nil, err
	}
	if err := p.send(cfg); err != nil {
		p.discard()
		_ = p.cmd.Process.Kill()
		return nil, err
	}
	return p, nil
}

// refillShim starts a spare shim when there is none.
func (r *Runtime) refillShim() {
	r.shimMu.Lock()
	if r.spare != nil || r.refilling || r.closed {
		r.shimMu.Unlock()
		return
	}
	r.refilling = true
	r.shimMu.Unlock()
	p, err := spawnShim()
	r.shimMu.Lock()
	defer r.shimMu.Unlock()
	r.refilling = false
	switch {
	case err != nil:
		// The next start spawns its own shim and reports the error.
	case r.spare != nil || r.closed:
		p.discard()
	default:
		r.spare = p
	}
}

// dropSpareShim ends the spare shim (Close).
func (r *Runtime) dropSpareShim() {
	r.shimMu.Lock()
	defer r.shimMu.Unlock()
	r.closed = true
	if r.spare != nil {
		r.spare.discard()
		r.spare = nil
	}
}

// readShimConfig is the shim's side: it reads its configuration from the
// pipe (fd 4). ok is false when the pipe closed with nothing written (a
// spare that was not needed).
func readShimConfig(f *os.File) (cfg shimConfig, ok bool, err error) {
	defer f.Close()
	dec := json.NewDecoder(f)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, false, nil
		}
		return cfg, false, fmt.Errorf("read shim config: %w", err)
	}
	return cfg, true, nil
}
