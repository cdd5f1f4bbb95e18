package oci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

// BenchmarkRunToRunning measures CreateContainer + StartContainer until the
// container runs (bundle with overlay rootfs, shim, runc create and start).
func BenchmarkRunToRunning(b *testing.B) {
	r := newTestRuntime(b)
	imgs := makeImages(b)
	ctx := context.Background()
	sb, err := r.RunPodSandbox(ctx, runtime.PodSandboxConfig{Name: "bench", Namespace: "bench", LogDirectory: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id, err := r.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "sleeper", Image: imgs.sleep})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.StartContainer(ctx, id); err != nil {
			b.Fatal(err)
		}
		if st, err := r.ContainerStatus(ctx, id); err != nil || st.State != runtime.StateRunning {
			b.Fatalf("after start: %+v %v", st, err)
		}
		b.StopTimer()
		if err := r.StopContainer(ctx, id, 0); err != nil {
			b.Fatal(err)
		}
		if err := r.RemoveContainer(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRawRuncRunDetached measures `runc run -d` of a prepared bundle,
// the floor BenchmarkRunToRunning is compared with.
func BenchmarkRawRuncRunDetached(b *testing.B) {
	requireHost(b)
	imgs := makeImages(b)
	runcPath, _ := exec.LookPath("runc")
	root, bundle := b.TempDir(), b.TempDir()
	ic, err := readImage(imgs.sleep)
	if err != nil {
		b.Fatal(err)
	}
	sp, err := buildSpec(specInput{image: ic, rootfs: filepath.Join(imgs.sleep, "rootfs"), hostname: "raw"})
	if err != nil {
		b.Fatal(err)
	}
	sp.Root.Path = filepath.Join(imgs.sleep, "rootfs")
	sp.Root.Readonly = true
	if err := writeSpec(bundle, sp); err != nil {
		b.Fatal(err)
	}
	runc := func(args ...string) {
		b.Helper()
		cmd := exec.Command(runcPath, append([]string{"--root", root}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("runc %v: %v: %s", args, err, out)
		}
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := newID()
		cmd := exec.Command(runcPath, "--root", root, "run", "-d", "--bundle", bundle, id)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, devNull
		if err := cmd.Run(); err != nil {
			b.Fatalf("runc run -d: %v", err)
		}
		b.StopTimer()
		runc("kill", id, "KILL")
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if err := exec.Command(runcPath, "--root", root, "delete", id).Run(); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		b.StartTimer()
	}
}
