package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/leader"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// childEnv, set to the cluster's URLs, makes the test binary run a second
// control plane (a separate process) instead of the tests.
const childEnv = "EDGE_CLUSTER_TEST_CONTROLPLANE"

// Lines a control plane prints (child) or reports (in process).
const (
	msgReady   = "ready"
	msgLeading = "leading"
	msgStopped = "stopped"
)

// electAndRun is the control plane's RunControllers: the real controllers
// behind the real leader election on the controllers' lease (what
// controllers.RunWithOptions does), telling report when this process
// starts and stops leading (the moment it gives up the lease).
func electAndRun(id string, report func(string)) func(context.Context, *store.Store, *messaging.Buckets, *nats.Conn) error {
	return func(ctx context.Context, st *store.Store, b *messaging.Buckets, _ *nats.Conn) error {
		return leader.Elect(ctx, b.Leader, messaging.LeaderKey(controllers.LeaderLease), id, controllers.DefaultLeaderTTL, leader.Callbacks{
			OnStartedLeading: func(ctx context.Context) {
				report(msgLeading)
				// Leading ends when ctx is cancelled (the lease is given up
				// or not renewed in time); the controllers then finish
				// what they are doing.
				stop := context.AfterFunc(ctx, func() { report(msgStopped) })
				defer func() {
					if stop() {
						report(msgStopped)
					}
				}()
				_ = controllers.RunWithOptions(ctx, st, b, controllers.Options{DisableLeaderElection: true})
			},
		})
	}
}

// clusterConfig is a control plane joining urls with R3 buckets, no auth.
func clusterConfig(urls, dataDir, id string, report func(string)) controlplane.Config {
	return controlplane.Config{
		NATSURL:        urls,
		Replicas:       3,
		DataDir:        dataDir,
		RunControllers: electAndRun(id, report),
	}
}

// runChildControlPlane runs a control plane as "cp-2" until SIGTERM,
// printing msgReady, msgLeading and msgStopped lines.
func runChildControlPlane(urls string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var mu sync.Mutex
	say := func(s string) { mu.Lock(); fmt.Println(s); mu.Unlock() }
	dir, err := os.MkdirTemp("", "edge-cluster-cp2-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := controlplane.Run(ctx, clusterConfig(urls, dir, "cp-2", say), func(string) { say(msgReady) }); err != nil {
		fmt.Fprintln(os.Stderr, "control plane cp-2:", err)
		return 1
	}
	return 0
}

// leaders tracks which control planes lead the controllers, and whether
// two ever did at once.
type leaders struct {
	mu       sync.Mutex
	leading  map[string]bool
	overlaps []string
	changes  []string
}

func (l *leaders) report(id, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch msg {
	case msgLeading:
		for other, on := range l.leading {
			if on && other != id {
				l.overlaps = append(l.overlaps, fmt.Sprintf("%s started leading while %s led", id, other))
			}
		}
		l.leading[id] = true
		l.changes = append(l.changes, time.Now().UTC().Format("15:04:05.000")+" "+id+" leads")
	case msgStopped:
		l.leading[id] = false
		l.changes = append(l.changes, time.Now().UTC().Format("15:04:05.000")+" "+id+" stopped")
	}
}

// current returns the ids leading now.
func (l *leaders) current() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for id, on := range l.leading {
		if on {
			ids = append(ids, id)
		}
	}
	return ids
}

// startInProcess runs a control plane in this process until the test ends.
func startInProcess(t *testing.T, cfg controlplane.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- controlplane.Run(ctx, cfg, func(string) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("control plane: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("control plane not ready after 30s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("control plane: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("control plane did not stop within 20s")
		}
	})
}

// startChild runs a second control plane as a separate process (this test
// binary) until the test ends; its lines go to each.
func startChild(t *testing.T, urls string, each func(string)) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+urls)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		var once sync.Once
		scanLines(bufio.NewScanner(out), func(line string) {
			if line == msgReady {
				once.Do(func() { close(ready) })
			}
			each(line)
		})
	}()
	exited := make(chan error, 1)
	go func() { <-scanned; exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("control plane cp-2: %v\n%s", err, tail(stderr.String(), 20))
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("control plane cp-2 did not stop within 20s\n%s", tail(stderr.String(), 20))
		}
	})
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("control plane cp-2 exited: %v\n%s", err, tail(stderr.String(), 20))
	case <-time.After(30 * time.Second):
		t.Fatalf("control plane cp-2 not ready after 30s\n%s", tail(stderr.String(), 20))
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
