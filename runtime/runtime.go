// Package runtime is the CRI-like interface between the agent and the things
// that run workloads (runtime/wasm, runtime/oci, runtime/fake). It holds only
// types and interfaces and imports nothing else of ours.
package runtime

import (
	"context"
	"errors"
	"io"
	"time"
)

// Runtime runs pod sandboxes and the containers in them.
//
// Stop and Remove calls are idempotent: stopping a stopped container or
// removing a missing one succeeds. Every call takes a context first; the
// context bounds the call, not the lifetime of what it starts.
type Runtime interface {
	// Name is the runtime handler name a node advertises ("wasm", "oci").
	Name() string

	RunPodSandbox(ctx context.Context, cfg PodSandboxConfig) (sandboxID string, err error)
	StopPodSandbox(ctx context.Context, sandboxID string) error
	RemovePodSandbox(ctx context.Context, sandboxID string) error

	CreateContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (containerID string, err error)
	StartContainer(ctx context.Context, containerID string) error
	// StopContainer asks the container to stop and kills it after timeout.
	StopContainer(ctx context.Context, containerID string, timeout time.Duration) error
	RemoveContainer(ctx context.Context, containerID string) error
	ContainerStatus(ctx context.Context, containerID string) (ContainerStatus, error)
	ListContainers(ctx context.Context, filter ContainerFilter) ([]ContainerStatus, error)

	// Close releases what the runtime holds. Containers of runtimes that run
	// out of process (oci) keep running; in-process ones (wasm) stop.
	Close(ctx context.Context) error
}

// Execer is implemented by runtimes that can run a command inside a container.
type Execer interface {
	Exec(ctx context.Context, containerID string, req ExecRequest) (exitCode int, err error)
}

// ExecRequest is a command to run in a running container.
type ExecRequest struct {
	Cmd    []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	TTY    bool
}

// NetNSer is implemented by runtimes whose sandboxes have their own
// network namespace (oci): the agent wires the pod network into it and
// runs probes from inside it. Wasm sandboxes share the host network.
type NetNSer interface {
	// SandboxNetNS returns the path of the sandbox's network namespace
	// (a bind mount usable with setns), or ErrNotFound.
	SandboxNetNS(ctx context.Context, sandboxID string) (string, error)
}

// Statser is implemented by runtimes that report resource usage.
type Statser interface {
	ContainerStats(ctx context.Context, containerID string) (ContainerStats, error)
}

// ContainerStats is a point-in-time usage sample.
type ContainerStats struct {
	MemoryBytes uint64
	CPUNanoSecs uint64
	Timestamp   time.Time
}

// PodSandboxConfig describes the shared environment of a pod's containers.
type PodSandboxConfig struct {
	Name      string
	Namespace string
	UID       string
	// Labels are stored with the sandbox and returned by ListContainers.
	Labels map[string]string
	// LogDirectory is where container log files of the pod go.
	LogDirectory string
	Hostname     string
	// Dir is a directory the runtime may use for the sandbox's own files
	// (oci: the network namespace bind mount, /etc/hosts, per-container
	// bundles and writable layers). It survives agent restarts.
	Dir string
	// DNS is the pod's resolver configuration (oci: its /etc/resolv.conf);
	// nil for the host's.
	DNS *DNSConfig
}

// DNSConfig is a pod's resolv.conf: nameserver lines, one search line and
// one options line ("ndots:5").
type DNSConfig struct {
	Servers  []string
	Searches []string
	Options  []string
}

// Mount is a host directory or file made visible inside a container.
// For wasm containers it is a preopened directory.
type Mount struct {
	HostPath      string
	ContainerPath string
	ReadOnly      bool
}

// ContainerConfig describes one container.
type ContainerConfig struct {
	Name string
	// Image is what to run: for wasm the path of a verified .wasm file on
	// local disk; for oci the directory of an unpacked image, holding
	// rootfs/ (never written to) and config.json (the OCI image config,
	// whose Entrypoint/Cmd/Env/WorkingDir/User the runtime merges with
	// Command/Args/Env/WorkingDir as Kubernetes does).
	Image      string
	Command    []string
	Args       []string
	Env        []KeyValue
	WorkingDir string
	Mounts     []Mount
	// LogPath is the file stdout and stderr go to (CRI log format), rotated
	// by the runtime at LogMaxBytes keeping LogMaxFiles old files.
	LogPath     string
	LogMaxBytes int64
	LogMaxFiles int
	// MemoryLimitBytes is 0 for no limit.
	MemoryLimitBytes int64
	// CPUMilli is the CPU limit in millicores, 0 for none.
	CPUMilli int64
	// PidsLimit is 0 for no limit.
	PidsLimit int64
	Labels    map[string]string
	Stdin     bool
	TTY       bool
	// Security applies to OCI containers; wasm containers are sandboxed by
	// construction and ignore it.
	Security SecurityConfig
	// Ports are the ports the container listens on. OCI containers ignore
	// them (they bind their own sockets). For wasm containers the runtime
	// opens a TCP listener per port (HostIP default 0.0.0.0) and preopens
	// them in order as the file descriptors after stdio and the mounted
	// directories: fd 3+len(Mounts), the next, and so on. The environment
	// gets LISTEN_FDS=<number of listeners> (the systemd convention) and
	// LISTEN_FDS_START=<first listener fd>; the module accepts with WASI
	// sock_accept. The listeners are closed when the container ends.
	Ports []PortMapping
}

// PortMapping is one port a container listens on.
type PortMapping struct {
	ContainerPort int32
	// Protocol is "TCP" (the default when empty), "UDP" or "SCTP".
	Protocol string
	// HostIP is the address to listen on; empty means all addresses.
	HostIP string
}

// SecurityConfig is the part of a container's securityContext a runtime
// enforces. The zero value is the default profile: not privileged, no new
// privileges, the default capability set, masked and read-only kernel paths.
type SecurityConfig struct {
	// RunAsUser and RunAsGroup override the image's user when set.
	RunAsUser  *int64
	RunAsGroup *int64
	// ReadOnlyRootFS makes the container's root filesystem read-only.
	ReadOnlyRootFS bool
	// CapAdd and CapDrop change the default capability set ("NET_ADMIN",
	// "ALL").
	CapAdd  []string
	CapDrop []string
	// AllowPrivilegeEscalation, when true, leaves no_new_privs unset.
	AllowPrivilegeEscalation bool
}

// KeyValue is one environment variable.
type KeyValue struct {
	Key   string
	Value string
}

// ContainerState is where a container is in its life.
type ContainerState int

const (
	StateCreated ContainerState = iota
	StateRunning
	StateExited
	StateUnknown
)

func (s ContainerState) String() string {
	switch s {
	case StateCreated:
		return "created"
	case StateRunning:
		return "running"
	case StateExited:
		return "exited"
	}
	return "unknown"
}

// ContainerStatus is what a runtime knows of one container.
type ContainerStatus struct {
	ID         string
	SandboxID  string
	Name       string
	Image      string
	State      ContainerState
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	// Reason is set on exit: "Completed", "Error", "OOMKilled", "DeadlineExceeded".
	Reason  string
	Message string
	Labels  map[string]string
	LogPath string
}

// ContainerFilter narrows ListContainers; zero fields match everything.
type ContainerFilter struct {
	SandboxID string
	State     *ContainerState
	Labels    map[string]string
}

// Error classes. Runtimes wrap these so callers can tell them apart with errors.Is.
var (
	// ErrNotFound: no sandbox or container with that ID.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the configuration cannot be run (bad module, bad command).
	ErrInvalid = errors.New("invalid configuration")
	// ErrImage: the image or module is missing or unreadable.
	ErrImage = errors.New("image error")
	// ErrState: the call does not fit the container's state (start twice).
	ErrState = errors.New("wrong state")
	// ErrUnavailable: the runtime itself cannot work here (runc missing).
	ErrUnavailable = errors.New("runtime unavailable")
)

// Exit reasons.
const (
	ReasonCompleted        = "Completed"
	ReasonError            = "Error"
	ReasonOOMKilled        = "OOMKilled"
	ReasonDeadlineExceeded = "DeadlineExceeded"
	ReasonKilled           = "Killed"
)
