package api

import (
	"bytes"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/metrics"
	"github.com/edgeorch/edgeorch/metrics/metricstest"
)

func apiSample(t *testing.T, labels ...string) float64 {
	t.Helper()
	var buf bytes.Buffer
	if err := metrics.WriteText(&buf, metrics.Default); err != nil {
		t.Fatal(err)
	}
	fams, err := metricstest.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := fams.Sample("edge_api_request_duration_seconds", labels...)
	return v
}

// TestRequestMetrics: every request is timed under its verb and the code
// of its reply, errors included.
func TestRequestMetrics(t *testing.T) {
	e := newEnv(t, Options{MaxRequestBytes: 1 << 10})
	okBefore := apiSample(t, "verb", messaging.VerbApply, "code", "OK")
	notFoundBefore := apiSample(t, "verb", messaging.VerbGet, "code", client.CodeNotFound)
	invalidBefore := apiSample(t, "verb", messaging.VerbApply, "code", client.CodeInvalid)

	if _, _, err := e.c.Apply(ctxT(t), pod("web", "img")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Get(ctxT(t), "pods", "default", "missing"); client.CodeOf(err) != client.CodeNotFound {
		t.Fatalf("get missing: %v", err)
	}
	e.call(t, messaging.VerbApply, bytes.Repeat([]byte("x"), 2<<10)) // too large: Invalid

	if got := apiSample(t, "verb", messaging.VerbApply, "code", "OK") - okBefore; got != 1 {
		t.Errorf("apply OK counted %v times, want 1", got)
	}
	if got := apiSample(t, "verb", messaging.VerbGet, "code", client.CodeNotFound) - notFoundBefore; got != 1 {
		t.Errorf("get NotFound counted %v times, want 1", got)
	}
	if got := apiSample(t, "verb", messaging.VerbApply, "code", client.CodeInvalid) - invalidBefore; got != 1 {
		t.Errorf("apply Invalid (too large) counted %v times, want 1", got)
	}
}
