package edgectl

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestConnectErrorAuthHint(t *testing.T) {
	err := fmt.Errorf("connect: %w", nats.ErrAuthorization)
	if got := (&connectError{server: "nats://x:4222", err: err}).Error(); !strings.Contains(got, "--creds FILE (env EDGE_CREDS)") {
		t.Errorf("no creds: %q", got)
	}
	if got := (&connectError{server: "nats://x:4222", err: err, creds: true}).Error(); !strings.Contains(got, "credentials were refused") {
		t.Errorf("refused creds: %q", got)
	}
	if got := (&connectError{server: "nats://x:4222", err: nats.ErrNoServers}).Error(); strings.Contains(got, "creds") {
		t.Errorf("unrelated error got an auth hint: %q", got)
	}
}
