package oci

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// applets are the busybox commands the test images link.
var applets = []string{
	"sh", "sleep", "cat", "echo", "env", "ls", "head", "dd", "nc", "wget", "httpd",
	"true", "false", "id", "seq", "touch", "tail", "hostname", "grep", "readlink", "mkdir",
}

// requireHost fails the test when the host cannot run containers.
func requireHost(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("runtime/oci tests need root (runc, mounts, network namespaces)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runtime/oci tests need runc in PATH: %v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("runtime/oci tests need a static busybox at /bin/busybox (busybox-static): %v", err)
	}
}

// imageSpec is the config of a test image.
type imageSpec struct {
	Entrypoint []string
	Cmd        []string
	User       string
}

// makeImage writes an unpacked image in dir: a busybox rootfs with a user
// "app" (1000) and config.json with PATH and the given command.
func makeImage(t testing.TB, dir string, img imageSpec) string {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "home/app"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cfg imageConfig
	cfg.Config.Env = []string{"PATH=/bin"}
	cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Config.User = img.Entrypoint, img.Cmd, img.User
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// envScript prints its arguments and the environment as the conformance
// suite wants them. The variables runc (HOME) and busybox sh (PWD, SHLVL)
// add by themselves, and the image's PATH, are left out.
const envScript = `echo "arg[0]=$0"
i=1
for a in "$@"; do echo "arg[$i]=$a"; i=$((i+1)); done
env | while IFS= read -r l; do
  case "$l" in HOME=*|PWD=*|SHLVL=*|PATH=*) ;; *) echo "env $l" ;; esac
done`

// testImages are the images of the conformance suite and the other tests.
type testImages struct {
	exit, env, sleep, busy, busybox, missing string
}

func makeImages(t testing.TB) testImages {
	t.Helper()
	dir := t.TempDir()
	return testImages{
		exit:    makeImage(t, filepath.Join(dir, "exit"), imageSpec{Entrypoint: []string{"/bin/sh", "-c", `echo "exiting with $1"; exit "$1"`, "exit"}}),
		env:     makeImage(t, filepath.Join(dir, "env"), imageSpec{Entrypoint: []string{"/bin/sh", "-c", envScript, "env"}}),
		sleep:   makeImage(t, filepath.Join(dir, "sleep"), imageSpec{Cmd: []string{"sleep", "3600"}}),
		busy:    makeImage(t, filepath.Join(dir, "busy"), imageSpec{Cmd: []string{"sh", "-c", "while :; do :; done"}}),
		busybox: makeImage(t, filepath.Join(dir, "busybox"), imageSpec{Cmd: []string{"sh"}}),
		missing: filepath.Join(dir, "missing"),
	}
}
