package edgeagent

import (
	"path/filepath"
	"testing"
)

// A relative --data-dir (as `make run` passes) must become absolute: the
// runtimes resolve relative log paths against the sandbox's log directory.
func TestConfigDataDirAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	c := Config{NodeName: "n", DataDir: "rel/agent"}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.DataDir) || filepath.Base(c.DataDir) != "agent" {
		t.Fatalf("DataDir = %q, want an absolute path ending in agent", c.DataDir)
	}
}
