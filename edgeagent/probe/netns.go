package probe

import (
	"context"
	"fmt"
	"net"
	"os"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// DialInNetNS opens a connection from inside the network namespace at path
// (a bind mount or /proc/<pid>/ns/net). The socket is created on an OS
// thread switched into that namespace; once made, it belongs to the
// namespace for good and the connection can be used from any goroutine.
func DialInNetNS(ctx context.Context, path, network, addr string) (net.Conn, error) {
	target, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	defer target.Close()
	type result struct {
		conn net.Conn
		err  error
	}
	res := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			goruntime.UnlockOSThread()
			res <- result{err: fmt.Errorf("open own network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			res <- result{err: fmt.Errorf("enter network namespace %s: %w", path, err)}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays in the pod's namespace: leave it locked
			// so it exits with this goroutine instead of being reused.
			if conn != nil {
				conn.Close()
			}
			res <- result{err: fmt.Errorf("return from network namespace: %w", err)}
			return
		}
		goruntime.UnlockOSThread()
		res <- result{conn, err}
	}()
	r := <-res
	return r.conn, r.err
}
