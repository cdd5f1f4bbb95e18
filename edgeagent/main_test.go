package edgeagent

import (
	"os"
	"testing"

	"github.com/edgeorch/edgeorch/runtime/oci"
)

// TestMain lets the test binary act as the oci runtime's shim, as the
// agent binary does.
func TestMain(m *testing.M) {
	oci.MaybeRunShim()
	os.Exit(m.Run())
}
