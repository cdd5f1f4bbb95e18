package oci

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

// TestEnvFilesPrivate: runc takes a container's environment from the
// bundle's config.json, so values from Secrets (env valueFrom secretKeyRef)
// are on the node's disk in clear, as with Kubernetes. Every file of the
// runtime that holds such a value must be readable by its owner (root)
// only and sit under a directory that other users cannot enter.
func TestEnvFilesPrivate(t *testing.T) {
	h := newHarness(t)
	// The agent's layout: <data-dir>/pods/<pod>/sandbox, the pod dir
	// created 0755 (its logs live there) before the sandbox.
	podDir := filepath.Join(t.TempDir(), "pods", "web")
	if err := os.MkdirAll(filepath.Join(podDir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	sbDir := filepath.Join(podDir, "sandbox")
	sb, err := h.r.RunPodSandbox(h.ctx, runtime.PodSandboxConfig{Name: "web", Namespace: "test", UID: "uid-web",
		Dir: sbDir, LogDirectory: filepath.Join(podDir, "logs")})
	if err != nil {
		t.Fatal(err)
	}
	const value = "s3cr3t-db-password-4711"
	cfg := h.busybox("app", `[ "$DB_PASSWORD" = "`+value+`" ] && echo env-ok; sleep 3600`)
	cfg.Env = []runtime.KeyValue{{Key: "DB_PASSWORD", Value: value}, {Key: "PLAIN", Value: "x"}}
	cfg.LogPath = filepath.Join(podDir, "logs", "app.log")
	id, err := h.r.CreateContainer(h.ctx, sb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.r.StartContainer(h.ctx, id); err != nil {
		t.Fatal(err)
	}
	// The value reached the container (which does not print it).
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(h.log(cfg.LogPath), "env-ok") {
		if time.Now().After(deadline) {
			t.Fatalf("the container did not see DB_PASSWORD; log:\n%s", h.log(cfg.LogPath))
		}
		time.Sleep(20 * time.Millisecond)
	}

	// While it runs, and with runc's own state present: every file under
	// the runtime's root and the sandbox dir that holds the value.
	var found []string
	for _, top := range []string{h.r.root, sbDir} {
		err := filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "rootfs" || d.Name() == "upper" || d.Name() == "work" || d.Name() == shmDir) {
				return fs.SkipDir // the containers' own files
			}
			if !d.Type().IsRegular() || d.Name() == netnsFile || d.Name() == ipcnsFile {
				return nil // namespace files are bind mounts of nsfs
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if !bytes.Contains(data, []byte(value)) {
				return nil
			}
			found = append(found, path)
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s holds the secret value with mode %#o, want 0600", path, fi.Mode().Perm())
			}
			// Some directory on the way from the top must keep others
			// out (no group/other bits).
			closed := ""
			for dir := filepath.Dir(path); strings.HasPrefix(dir, top); dir = filepath.Dir(dir) {
				di, err := os.Stat(dir)
				if err != nil {
					return err
				}
				if di.Mode().Perm()&0o077 == 0 {
					closed = dir
					break
				}
			}
			if closed == "" {
				t.Errorf("%s holds the secret value and no directory from %s down to it is private (0700)", path, top)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("files holding the env value: %v", found)
	var bundleSpec bool
	for _, f := range found {
		if filepath.Base(f) == "config.json" && strings.HasPrefix(f, filepath.Join(sbDir, bundlesDir)) {
			bundleSpec = true
		}
	}
	if !bundleSpec {
		t.Fatalf("the value is not in the bundle's config.json (found in %v): the test looks in the wrong places", found)
	}
	for _, dir := range []string{sbDir, filepath.Join(sbDir, bundlesDir), filepath.Join(h.r.root, containersDir)} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %#o, want 0700", dir, fi.Mode().Perm())
		}
	}
}
