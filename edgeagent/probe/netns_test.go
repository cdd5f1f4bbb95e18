package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// testNetNS makes a network namespace with loopback up on a locked thread
// kept alive for the test, and returns its path and a function that runs
// f inside it (on that thread).
func testNetNS(t *testing.T) (string, func(f func())) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace")
	}
	work := make(chan func())
	ready := make(chan error, 1)
	var path string
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare: %w", err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		path = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		ready <- err
		for f := range work {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(work) })
	return path, func(f func()) {
		done := make(chan struct{})
		work <- func() { f(); close(done) }
		<-done
	}
}

func TestDialInNetNS(t *testing.T) {
	path, inside := testNetNS(t)
	var l net.Listener
	var err error
	inside(func() { l, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(404)
		}
	})}
	go srv.Serve(l)
	defer srv.Close()
	port := int32(l.Addr().(*net.TCPAddr).Port)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Several at once: each goroutine's thread must go back to the host
	// namespace afterwards.
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			errs <- (&Target{NetNS: path}).run(ctx, &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Path: "/healthz", Port: manifests.FromInt(port)}})
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("http probe in netns: %v", err)
		}
	}
	if err := (&Target{NetNS: path}).run(ctx, &manifests.Probe{TCPSocket: &manifests.TCPSocketAction{Port: manifests.FromInt(port)}}); err != nil {
		t.Fatalf("tcp probe in netns: %v", err)
	}
	if err := (&Target{NetNS: path}).run(ctx, &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Path: "/other", Port: manifests.FromInt(port)}}); err == nil ||
		!strings.Contains(err.Error(), "statuscode: 404") {
		t.Fatalf("want 404 failure, got %v", err)
	}
	// The listener is not in the host namespace.
	if err := (&Target{}).run(ctx, &manifests.Probe{TCPSocket: &manifests.TCPSocketAction{Port: manifests.FromInt(port)}}); err == nil {
		t.Fatal("tcp probe from the host namespace reached the pod's listener")
	}
	// This goroutine's later sockets are still in the host namespace.
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	if err := (&Target{NetNS: path}).run(ctx, &manifests.Probe{TCPSocket: &manifests.TCPSocketAction{Port: manifests.FromInt(int32(hl.Addr().(*net.TCPAddr).Port))}}); err == nil {
		t.Fatal("tcp probe in netns reached a host listener")
	}
	if _, err := DialInNetNS(ctx, "/nonexistent/netns", "tcp", "127.0.0.1:1"); err == nil {
		t.Fatal("dial in a missing netns succeeded")
	}
}
