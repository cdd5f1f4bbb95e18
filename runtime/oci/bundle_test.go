package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/edgeorch/edgeorch/runtime"
)

func TestBuildSpecMergesImageAndConfig(t *testing.T) {
	rootfs := filepath.Join(makeImage(t, filepath.Join(t.TempDir(), "img"), imageSpec{}), "rootfs")
	var img imageConfig
	img.Config.Entrypoint = []string{"/entry"}
	img.Config.Cmd = []string{"default-arg"}
	img.Config.Env = []string{"PATH=/bin", "A=image"}
	img.Config.WorkingDir = "/work"
	for _, tc := range []struct {
		name     string
		cmd, arg []string
		want     []string
	}{
		{"image", nil, nil, []string{"/entry", "default-arg"}},
		{"args replace cmd", nil, []string{"x"}, []string{"/entry", "x"}},
		{"command replaces entrypoint and cmd", []string{"/bin/sh"}, nil, []string{"/bin/sh"}},
		{"command and args", []string{"/bin/sh"}, []string{"-c", "true"}, []string{"/bin/sh", "-c", "true"}},
	} {
		sp, err := buildSpec(specInput{cfg: runtime.ContainerConfig{Command: tc.cmd, Args: tc.arg}, image: img, rootfs: rootfs})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(sp.Process.Args, tc.want) {
			t.Errorf("%s: args %q, want %q", tc.name, sp.Process.Args, tc.want)
		}
	}
	sp, err := buildSpec(specInput{
		cfg: runtime.ContainerConfig{
			Env:              []runtime.KeyValue{{Key: "A", Value: "config"}, {Key: "B", Value: "b"}},
			MemoryLimitBytes: 64 << 20, CPUMilli: 250, PidsLimit: 32,
		},
		image: img, rootfs: rootfs, netns: "/run/netns/x", cgroupsPath: "/edge/sb/c", swap: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=/bin", "A=config", "B=b"}; !slices.Equal(sp.Process.Env, want) {
		t.Errorf("env %q, want %q", sp.Process.Env, want)
	}
	if sp.Process.Cwd != "/work" || !sp.Process.NoNewPrivileges || sp.Process.User.UID != 0 {
		t.Errorf("process: %+v", sp.Process)
	}
	res := sp.Linux.Resources
	if *res.Memory.Limit != 64<<20 || *res.Memory.Swap != 64<<20 || *res.CPU.Quota != 25000 || *res.CPU.Period != 100000 || res.Pids.Limit != 32 {
		t.Errorf("resources: memory %+v cpu %+v pids %+v", res.Memory, res.CPU, res.Pids)
	}
	if !slices.Contains(sp.Linux.Namespaces, namespace{Type: "network", Path: "/run/netns/x"}) || sp.Linux.CgroupsPath != "/edge/sb/c" {
		t.Errorf("linux: %+v", sp.Linux)
	}

	img.Config.Entrypoint, img.Config.Cmd = nil, nil
	if _, err := buildSpec(specInput{image: img, rootfs: rootfs}); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("no command: %v, want ErrInvalid", err)
	}
}

func TestResolveUser(t *testing.T) {
	rootfs := filepath.Join(makeImage(t, filepath.Join(t.TempDir(), "img"), imageSpec{}), "rootfs")
	id := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		image    string
		sec      runtime.SecurityConfig
		uid, gid uint32
		bad      bool
	}{
		{image: "", uid: 0, gid: 0},
		{image: "app", uid: 1000, gid: 1000},
		{image: "app:root", uid: 1000, gid: 0},
		{image: "1234", uid: 1234, gid: 0},
		{image: "1234:55", uid: 1234, gid: 55},
		{image: "app", sec: runtime.SecurityConfig{RunAsUser: id(0)}, uid: 0, gid: 0},
		{image: "", sec: runtime.SecurityConfig{RunAsUser: id(1000)}, uid: 1000, gid: 1000},
		{image: "", sec: runtime.SecurityConfig{RunAsUser: id(7), RunAsGroup: id(8)}, uid: 7, gid: 8},
		{image: "nobody-here", bad: true},
		{image: "app:nogroup", bad: true},
	} {
		u, err := resolveUser(rootfs, tc.image, tc.sec)
		if tc.bad {
			if !errors.Is(err, runtime.ErrInvalid) {
				t.Errorf("user %q: %v, want ErrInvalid", tc.image, err)
			}
			continue
		}
		if err != nil || u.UID != tc.uid || u.GID != tc.gid {
			t.Errorf("user %q %+v: %d:%d %v, want %d:%d", tc.image, tc.sec, u.UID, u.GID, err, tc.uid, tc.gid)
		}
	}
}

func TestCapSet(t *testing.T) {
	all, err := capSet(runtime.SecurityConfig{CapAdd: []string{"ALL"}})
	if err != nil || len(all) < len(defaultCaps) || !slices.Contains(all, "CAP_SYS_ADMIN") {
		t.Fatalf("CapAdd ALL: %v %v", all, err)
	}
	none, err := capSet(runtime.SecurityConfig{CapDrop: []string{"all"}})
	if err != nil || len(none) != 0 {
		t.Fatalf("CapDrop ALL: %v %v", none, err)
	}
	if _, err := capSet(runtime.SecurityConfig{CapAdd: []string{"NO_SUCH"}}); !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("unknown capability: %v", err)
	}
}

func TestWriteJSONIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.json")
	if err := writeJSON(path, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(path, map[string]int{"a": 2}); err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if ok, err := readJSON(path, &got); !ok || err != nil || got["a"] != 2 {
		t.Fatalf("read back: %v %v %v", got, ok, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if ok, err := readJSON(filepath.Join(dir, "missing.json"), &got); ok || err != nil {
		t.Fatalf("missing file: %v %v", ok, err)
	}
}
