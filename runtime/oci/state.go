package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

// On-disk layout under Options.Root:
//
//	runc/                       runc --root
//	sandboxes/<id>.json         sandboxRecord
//	containers/<id>/container.json  containerRecord (written by the runtime)
//	containers/<id>/started.json    startedRecord (written by the shim)
//	containers/<id>/exit.json   exitRecord (written by the shim, or by the
//	                            runtime for containers that never ran)
//	containers/<id>/shim.log    the shim's own diagnostics
const (
	sandboxesDir  = "sandboxes"
	containersDir = "containers"
	runcDir       = "runc"

	containerFile = "container.json"
	startedFile   = "started.json"
	exitFile      = "exit.json"
	shimLogFile   = "shim.log"
)

// sandboxRecord is one pod sandbox.
type sandboxRecord struct {
	ID        string                   `json:"id"`
	Config    runtime.PodSandboxConfig `json:"config"`
	Dir       string                   `json:"dir"`
	Ready     bool                     `json:"ready"`
	CreatedAt time.Time                `json:"createdAt"`
}

// containerRecord is one container as the runtime created it.
type containerRecord struct {
	ID          string                  `json:"id"`
	SandboxID   string                  `json:"sandboxId"`
	Config      runtime.ContainerConfig `json:"config"`
	Labels      map[string]string       `json:"labels"`
	LogPath     string                  `json:"logPath"`
	Bundle      string                  `json:"bundle"`
	Overlay     bool                    `json:"overlay"`
	CgroupsPath string                  `json:"cgroupsPath"`
	CreatedAt   time.Time               `json:"createdAt"`
	// StartRequested is set before the shim is started: a container is
	// started at most once.
	StartRequested bool `json:"startRequested"`
	// Killed is set before the runtime sends SIGKILL.
	Killed bool `json:"killed"`
}

// startedRecord is written by the shim once the container process runs.
type startedRecord struct {
	Pid       int        `json:"pid"`
	ShimPid   int        `json:"shimPid"`
	ShimStart string     `json:"shimStart"` // start time of the shim process (/proc/<pid>/stat)
	StartedAt time.Time  `json:"startedAt"`
	Cgroups   cgroupDirs `json:"cgroups"`
}

// exitRecord is how a container ended.
type exitRecord struct {
	ExitCode   int32     `json:"exitCode"`
	FinishedAt time.Time `json:"finishedAt"`
	OOMKilled  bool      `json:"oomKilled"`
	// Reason and Message, when set, override the reason derived from the
	// exit code ("StartError" for containers that could not start).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// StartedAt is set when the container never ran.
	StartedAt time.Time `json:"startedAt,omitzero"`
}

// writeJSON writes v to path atomically and durably: a temporary file in
// the same directory is synced and renamed over path, and the directory is
// synced.
func writeJSON(path string, v any) error {
	return writeJSONFile(path, v, true)
}

// replaceJSON writes v to path atomically, without waiting for the disk.
// For records whose loss in a power cut changes nothing (the containers
// die with the machine): readers treat a record torn by a power cut (empty
// or cut short) as one never written. A crash of the process alone loses
// nothing (the page cache survives it).
func replaceJSON(path string, v any) error {
	return writeJSONFile(path, v, false)
}

func writeJSONFile(path string, v any, durable bool) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// readJSON reads path into v. A missing file is reported with ok false and
// no error.
func readJSON(path string, v any) (ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", path, err)
	}
	return true, nil
}

// startError is the exit record of a container that could not start.
func startError(msg string) exitRecord {
	now := time.Now()
	return exitRecord{ExitCode: exitStartError, StartedAt: now, FinishedAt: now, Reason: reasonStartError, Message: msg}
}
