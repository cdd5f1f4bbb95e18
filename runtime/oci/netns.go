package oci

import (
	"errors"
	"fmt"
	"os"
	goruntime "runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// createNetNS makes a new network namespace with loopback up and
// bind-mounts it at path, so that it outlives every process in it.
func createNetNS(path string) error {
	return createNS(path, unix.CLONE_NEWNET, "net", loopbackUp)
}

// createIPCNS makes a new IPC namespace bind-mounted at path.
func createIPCNS(path string) error {
	return createNS(path, unix.CLONE_NEWIPC, "ipc", nil)
}

// createNS unshares a namespace of a kind (clone flag, name in
// /proc/<pid>/ns) on a thread of its own, bind-mounts it at path and runs
// setup inside it.
func createNS(path string, flag int, kind string, setup func() error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create %s namespace mount point: %w", kind, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it is in the new namespace and
		// exits with this goroutine.
		goruntime.LockOSThread()
		if err := unix.Unshare(flag); err != nil {
			errc <- fmt.Errorf("unshare %s namespace: %w", kind, err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/%s", unix.Gettid(), kind)
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount %s namespace: %w", kind, err)
			return
		}
		if setup != nil {
			errc <- setup()
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = removeNS(path)
		return err
	}
	return nil
}

// loopbackUp sets the "lo" interface of the calling thread's network
// namespace up (netlink opens its socket in the thread's namespace).
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// removeNS unmounts and deletes a namespace (or other mount, such as the
// pod's /dev/shm) made by the sandbox; a missing one is not an error.
func removeNS(path string) error {
	if err := unmount(path); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// mountShm mounts the pod's /dev/shm, a tmpfs its containers share.
func mountShm(path string) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("pod shm: %w", err)
	}
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount pod shm: %w", err)
	}
	return nil
}
