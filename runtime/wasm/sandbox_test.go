package wasm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// steps runs the escape module with the given steps and returns its
// output, one line per step.
func (f *fixture) steps(name string, mounts []runtime.Mount, env []runtime.KeyValue, steps ...string) map[string]string {
	f.t.Helper()
	id := f.start(runtime.ContainerConfig{Name: name, Image: testmodules.Path(f.t, "escape"), Args: steps, Mounts: mounts, Env: env})
	st := f.wait(id, exited)
	text := f.logs(id)
	if st.ExitCode != 0 {
		f.t.Fatalf("escape exited %d (%s):\n%s", st.ExitCode, st.Message, text)
	}
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if step, res, ok := strings.Cut(line, ": "); ok {
			out[step] += res
		}
	}
	f.t.Logf("%s:\n%s", name, text)
	return out
}

// TestSandboxFilesystem proves that a module sees only the directories
// mounted for it: the host's root, /etc/passwd, ".." escapes and symbolic
// links (planted on the host or made by the module) lead nowhere else.
func TestSandboxFilesystem(t *testing.T) {
	f := newFixture(t)
	host := t.TempDir()
	data := filepath.Join(host, "data")
	outside := filepath.Join(host, "outside")
	for _, d := range []string{data, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(outside, "secret.txt")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "inside.txt"), []byte("inside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Links planted on the host, in the mounted directory.
	if err := os.Symlink(secret, filepath.Join(data, "abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside/secret.txt", filepath.Join(data, "rel-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(data, "etc-link")); err != nil {
		t.Fatal(err)
	}
	// A link that stays inside works; a dangling one out is not followed
	// to create its target.
	if err := os.Symlink("inside.txt", filepath.Join(data, "in-link")); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(outside, "created-through-link.txt")
	if err := os.Symlink(dangling, filepath.Join(data, "dangling-out")); err != nil {
		t.Fatal(err)
	}
	out := f.steps("escape", []runtime.Mount{{HostPath: data, ContainerPath: "/data"}}, nil,
		"read:/data/inside.txt", "ls:/data", "read:/data/in-link", "write:/data/dangling-out",
		"read:/etc/passwd", "ls:/", "ls:/etc", "ls:..", "read:../etc/passwd",
		"read:/data/../outside/secret.txt", "read:/data/../../../../etc/passwd", "ls:/data/..",
		"read:/data/abs-link", "read:/data/rel-link", "ls:/data/etc-link", "read:/data/etc-link/passwd",
		"symlink:/etc/passwd:/data/made-abs", "read:/data/made-abs",
		"symlink:../../../../../../etc/passwd:/data/made-rel", "read:/data/made-rel",
		"write:/data/../escaped.txt", "write:/escaped.txt", "write:/tmp/escaped.txt",
		"read:"+secret,
	)
	// Positive controls: the mounted directory works.
	if got := out["read:/data/inside.txt"]; got != "ok inside" {
		t.Fatalf("reading a mounted file: %q", got)
	}
	if got := out["ls:/data"]; !strings.HasPrefix(got, "ok") || !strings.Contains(got, "inside.txt") {
		t.Fatalf("listing the mount: %q", got)
	}
	if got := out["read:/data/in-link"]; got != "ok inside" {
		t.Fatalf("reading through a link inside the mount: %q", got)
	}
	if _, err := os.Stat(dangling); err == nil {
		t.Fatalf("the module created %s through a dangling link", dangling)
	}
	for step, res := range out {
		if step == "read:/data/inside.txt" || step == "ls:/data" || step == "read:/data/in-link" || strings.HasPrefix(step, "symlink:") {
			continue
		}
		if strings.Contains(res, "host secret") || strings.Contains(res, "root:") {
			t.Errorf("%s reached the host: %q", step, res)
		}
		// Listing "/" or ".." may show the mount points and nothing else.
		if strings.HasPrefix(step, "ls:") && strings.HasPrefix(res, "ok") {
			for _, entry := range strings.Fields(strings.TrimPrefix(res, "ok")) {
				if entry != "data" {
					t.Errorf("%s lists %q, not a mount point", step, entry)
					break
				}
			}
			continue
		}
		if !strings.HasPrefix(res, "error") {
			t.Errorf("%s: %q, want an error", step, res)
		}
	}
	for _, p := range []string{filepath.Join(host, "escaped.txt"), "/escaped.txt", "/tmp/escaped.txt"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("the module wrote %s", p)
		}
	}
}

// TestSandboxNoMounts: a module without volumes has no filesystem at all.
func TestSandboxNoMounts(t *testing.T) {
	f := newFixture(t)
	out := f.steps("nomounts", nil, nil, "ls:/", "read:/etc/passwd", "ls:.", "write:/x.txt", "write:x.txt")
	for step, res := range out {
		if !strings.HasPrefix(res, "error") {
			t.Errorf("%s: %q, want an error", step, res)
		}
	}
}

// TestSandboxEnv proves that a module sees only the environment its pod
// declares, not the agent's.
func TestSandboxEnv(t *testing.T) {
	t.Setenv("EDGE_SANDBOX_CANARY", "agent-secret-7f3a")
	f := newFixture(t)
	id := f.start(runtime.ContainerConfig{Name: "env", Image: testmodules.Path(t, "escape"), Args: []string{"env"},
		Env: []runtime.KeyValue{{Key: "DECLARED", Value: "yes"}}})
	f.wait(id, exited)
	text := f.logs(id)
	if strings.Contains(text, "EDGE_SANDBOX_CANARY") || strings.Contains(text, "agent-secret-7f3a") {
		t.Fatalf("the module sees the agent's environment:\n%s", text)
	}
	var env []string
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "env: "); ok {
			env = append(env, v)
		}
	}
	if len(env) != 1 || env[0] != "DECLARED=yes" {
		t.Fatalf("environment %q, want only DECLARED=yes", env)
	}
	for _, banned := range []string{"PATH", "HOME"} {
		if os.Getenv(banned) != "" && strings.Contains(text, banned+"=") {
			t.Fatalf("the module sees %s", banned)
		}
	}
}

// TestRunawayModulesNeighbourKeepsRunning runs a busy loop and a memory
// bomb next to a neighbour pod: the bomb fails on its memory limit, the
// loop is stopped (the context of the module is closed), and the
// neighbour keeps running and logging throughout.
func TestRunawayModulesNeighbourKeepsRunning(t *testing.T) {
	f := newFixture(t)
	// The neighbour is another pod.
	nsb, err := f.r.RunPodSandbox(f.ctx, runtime.PodSandboxConfig{Name: "neighbour", Namespace: "default", LogDirectory: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	hello, err := f.r.CreateContainer(f.ctx, nsb, runtime.ContainerConfig{Name: "hello", Image: testmodules.Path(t, "hello"),
		MemoryLimitBytes: 16 << 20, Env: []runtime.KeyValue{{Key: "GREETING", Value: "hi"}, {Key: "NODE_NAME", Value: "n1"}},
		LogPath: filepath.Join(f.dir, "hello.log")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.r.StartContainer(f.ctx, hello); err != nil {
		t.Fatal(err)
	}
	lines := func() int { return strings.Count(f.logs(hello), "hi from n1 #") }
	f.wait(hello, func(runtime.ContainerStatus) bool { return lines() >= 1 })

	loop := f.start(runtime.ContainerConfig{Name: "loop", Image: testmodules.Path(t, "loop")})
	bomb := f.start(runtime.ContainerConfig{Name: "bomb", Image: testmodules.Path(t, "membomb"), MemoryLimitBytes: 32 << 20})
	st := f.wait(bomb, exited)
	if st.Reason != runtime.ReasonOOMKilled || st.ExitCode != 137 || !strings.Contains(st.Message, "memory limit reached") {
		t.Fatalf("bomb: %+v, want OOMKilled 137 with a reason", st)
	}
	t.Logf("bomb: %s %d %q; log %q", st.Reason, st.ExitCode, st.Message, strings.TrimSpace(f.logs(bomb)))
	// The loop is still spinning (it never yields) and the neighbour logs.
	before := lines()
	f.wait(hello, func(runtime.ContainerStatus) bool { return lines() > before })
	if ls, err := f.r.ContainerStatus(f.ctx, loop); err != nil || ls.State != runtime.StateRunning {
		t.Fatalf("loop: %+v %v", ls, err)
	}
	start := time.Now()
	if err := f.r.StopContainer(f.ctx, loop, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopping the busy loop took %v", time.Since(start))
	st = f.wait(loop, exited)
	if st.Reason != runtime.ReasonKilled || st.ExitCode != 137 {
		t.Fatalf("loop: %+v, want Killed 137", st)
	}
	before = lines()
	f.wait(hello, func(runtime.ContainerStatus) bool { return lines() > before })
	hs, err := f.r.ContainerStatus(f.ctx, hello)
	if err != nil || hs.State != runtime.StateRunning {
		t.Fatalf("neighbour: %+v %v", hs, err)
	}
	t.Logf("neighbour logged %d lines and still runs", lines())
}

// TestConfinedFSOperations checks the operations the escape module does
// not reach (hard links, renames, directories) against a link out.
func TestConfinedFSOperations(t *testing.T) {
	host := t.TempDir()
	data, outside := filepath.Join(host, "data"), filepath.Join(host, "outside")
	for _, d := range []string{data, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "mine"), []byte("m"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(data, "out")); err != nil {
		t.Fatal(err)
	}
	c, err := newConfinedFS(data)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, errno := range map[string]experimentalsys.Errno{
		"link out->in":   c.Link("out/secret", "stolen"),
		"link in->out":   c.Link("mine", "out/planted"),
		"rename in->out": c.Rename("mine", "out/moved"),
		"mkdir out":      c.Mkdir("out/dir", 0o755),
		"chmod out":      c.Chmod("out/secret", 0o777),
		"unlink out":     c.Unlink("out/secret"),
		"utimens out":    c.Utimens("out/secret", 0, 0),
		"symlink":        c.Symlink("mine", "alias"),
	} {
		if errno != experimentalsys.EPERM {
			t.Errorf("%s: errno %v, want EPERM", name, errno)
		}
	}
	if _, errno := c.Stat("out/secret"); errno != experimentalsys.EPERM {
		t.Errorf("stat through the link: %v", errno)
	}
	if _, errno := c.Lstat("out"); errno != 0 {
		t.Errorf("lstat of the link itself: %v", errno)
	}
	for _, p := range []string{"stolen", "alias"} {
		if _, err := os.Lstat(filepath.Join(data, p)); err == nil {
			t.Errorf("%s was created", p)
		}
	}
	for _, p := range []string{"planted", "moved", "dir"} {
		if _, err := os.Lstat(filepath.Join(outside, p)); err == nil {
			t.Errorf("%s was created outside", p)
		}
	}
	// Inside the mount everything still works.
	if errno := c.Mkdir("sub", 0o755); errno != 0 {
		t.Fatal(errno)
	}
	if errno := c.Rename("mine", "sub/mine"); errno != 0 {
		t.Fatal(errno)
	}
	if errno := c.Link("sub/mine", "again"); errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := c.Stat("/again"); errno != 0 {
		t.Fatal(errno)
	}
}
