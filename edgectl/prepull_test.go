package edgectl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/sim"
)

func TestPrepullOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	dir := t.TempDir()
	sites := []string{"a", "a", "b"}
	c := sim.Start(ctx, t, sim.Options{
		Nodes:  3,
		Dir:    dir,
		Labels: func(i int) map[string]string { return map[string]string{"site": sites[i]} },
		// Real module caches: the agents fetch modules themselves.
		Agent: func(_ int, cfg *edgeagent.Config) { cfg.PassImages = false },
	})
	ctl := ctlAt(t, c.URL)

	module := []byte("\x00asm\x01\x00\x00\x00")
	sum := sha256.Sum256(module)
	digest := hex.EncodeToString(sum[:])
	file := filepath.Join(t.TempDir(), "app.wasm")
	if err := os.WriteFile(file, module, 0o644); err != nil {
		t.Fatal(err)
	}
	mustOK(t, ctl("", "push", file, "--name", "app:v2"), "push")
	cached := func(i int) bool {
		_, err := os.Stat(filepath.Join(dir, "nodes", sim.NodeName(i), "modules", "sha256", digest+".wasm"))
		return err == nil
	}

	// Node 1 of site a goes offline.
	c.StopNode(1)
	r := ctl("", "prepull", "app:v2", "--selector", "site=a", "--timeout", "10s")
	want := fmt.Sprintf("node/sim-node-0 pulled sha256:%s\nnode/sim-node-1 unreachable\n", digest)
	if r.code != 1 || r.stdout != want || !strings.Contains(r.stderr, "1 of 2 nodes did not pull it (0 failed, 1 unreachable)") {
		t.Fatalf("prepull site=a: exit %d\nstdout: %s\nwant: %s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
	if !cached(0) || cached(1) || cached(2) {
		t.Fatalf("cached on nodes 0,1,2: %v %v %v, want only node 0", cached(0), cached(1), cached(2))
	}

	out := mustOK(t, ctl("", "prepull", "app:v2", "-l", "site=b"), "prepull site=b")
	if out != fmt.Sprintf("node/sim-node-2 pulled sha256:%s\n", digest) || !cached(2) {
		t.Fatalf("prepull site=b: %q, cached %v", out, cached(2))
	}

	r = ctl("", "prepull", "nope:v1", "-l", "site=b")
	if r.code != 1 || !strings.HasPrefix(r.stdout, "node/sim-node-2 error: ") || !strings.Contains(r.stdout, "not found") {
		t.Fatalf("prepull of a missing module: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := ctl("", "prepull", "app:v2", "-l", "site=nowhere"); r.code != 1 || !strings.Contains(r.stderr, "no nodes match") {
		t.Fatalf("no nodes: exit %d stderr %s", r.code, r.stderr)
	}
	if r := ctl("", "prepull", "app:v2", "--runtime", "java"); r.code == 0 {
		t.Fatalf("bad runtime accepted: %s", r.stdout)
	}
}
