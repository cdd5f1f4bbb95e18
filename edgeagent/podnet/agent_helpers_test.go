package podnet_test

import (
	"path/filepath"
	goruntime "runtime"

	"github.com/vishvananda/netns"
)

// lockAndNew creates a network namespace on a locked thread that stays in
// it (the goroutine ends, so does the thread) and sends its handle.
func lockAndNew(c chan<- netns.NsHandle, e chan<- error) {
	goruntime.LockOSThread()
	h, err := netns.New()
	if err != nil {
		e <- err
		return
	}
	c <- h
}

func globLogs(dataDir, pod string) ([]string, error) {
	return filepath.Glob(filepath.Join(dataDir, "pods", "default_"+pod+"_*", "logs", "main", "*.log"))
}
