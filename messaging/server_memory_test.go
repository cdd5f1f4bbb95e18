package messaging

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The embedded server remembers at most MaxClosedClients closed
// connections, not nats-server's 10,000.
func TestServerRemembersFewClosedConnections(t *testing.T) {
	ns, err := StartServer(ServerConfig{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := MaxClosedClients + 50
	for i := range n {
		nc, err := Connect(ctx, ns.ClientURL(), fmt.Sprintf("closing-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.SubscribeSync(fmt.Sprintf("closing.%d", i)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	var total int
	deadline := time.Now().Add(10 * time.Second)
	for {
		cz, err := ns.Connz(&server.ConnzOptions{State: server.ConnClosed, Limit: 2 * n})
		if err != nil {
			t.Fatal(err)
		}
		total = cz.Total
		if cz.NumConns == MaxClosedClients || time.Now().After(deadline) {
			if cz.NumConns != MaxClosedClients {
				t.Fatalf("server remembers %d closed connections (total %d) after %d closed, want %d", cz.NumConns, total, n, MaxClosedClients)
			}
			return
		}
		time.Sleep(20 * time.Millisecond) // polled with a deadline
	}
}
