package edgectl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// serveExec answers exec requests for node as an agent does: the command
// "upper" copies its stdin upper-cased to stdout, writes "done" to stderr
// and exits 3; any other command prints its arguments and exits 0.
func serveExec(t *testing.T, nc *nats.Conn, node string) <-chan client.ExecRequest {
	t.Helper()
	reqs := make(chan client.ExecRequest, 10)
	var sessions sync.WaitGroup
	sub, err := nc.Subscribe(messaging.NodeSubject(node, messaging.NodeVerbExec), func(m *nats.Msg) {
		var req client.ExecRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("decode exec request: %v", err)
			return
		}
		reqs <- req
		var in *nats.Subscription
		stdin := make(chan *nats.Msg, 64)
		if req.Stdin {
			in, _ = nc.ChanSubscribe(messaging.NodeExecStdinSubject(node, "s1"), stdin)
		}
		result, _ := json.Marshal(client.ExecStarted{Session: "s1"})
		reply, _ := json.Marshal(client.Response{Result: result})
		m.Respond(reply)
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			send := func(c client.ExecChunk) {
				raw, _ := json.Marshal(c)
				if _, err := nc.Request(req.Inbox, raw, 5*time.Second); err != nil {
					t.Errorf("send chunk: %v", err)
				}
			}
			code := 0
			if req.Command[0] == "upper" {
				var data bytes.Buffer
				for msg := range stdin {
					var ei client.ExecInput
					json.Unmarshal(msg.Data, &ei)
					data.Write(ei.Data)
					if ei.EOF {
						break
					}
				}
				in.Unsubscribe()
				send(client.ExecChunk{Stream: client.StreamStdout, Data: bytes.ToUpper(data.Bytes())})
				send(client.ExecChunk{Stream: client.StreamStderr, Data: []byte("done\n")})
				code = 3
			} else {
				send(client.ExecChunk{Stream: client.StreamStdout, Data: []byte(strings.Join(req.Command, " ") + "\n")})
			}
			send(client.ExecChunk{Exit: &code})
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sub.Unsubscribe()
		sessions.Wait()
	})
	return reqs
}

func TestExecCommand(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	reqs := serveExec(t, connect(t, url), "node-x")
	pod := fmt.Sprintf(podManifest, "shell", "node-x")
	mustOK(t, ctl(pod, "apply", "-f", "-"), "apply")

	r := ctl("", "exec", "shell", "--", "ls", "-l", "/")
	if r.code != 0 || r.stdout != "ls -l /\n" || r.stderr != "" {
		t.Errorf("exec ls: %+v", r)
	}
	if req := <-reqs; req.Namespace != "default" || req.Pod != "shell" || req.Container != "hello" || req.Stdin || req.TTY {
		t.Errorf("request %+v", req)
	}

	r = ctl("hello\nworld\n", "exec", "-i", "pod/shell", "-c", "hello", "--", "upper")
	if r.code != 3 || r.stdout != "HELLO\nWORLD\n" || r.stderr != "done\ncommand terminated with exit code 3\n" {
		t.Errorf("exec -i upper: %+v", r)
	}
	if req := <-reqs; !req.Stdin || req.Container != "hello" {
		t.Errorf("request %+v", req)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"exec", "shell"}, "you must specify at least one command"},
		{[]string{"exec", "shell", "other", "--", "ls"}, "exactly one POD argument may come before --"},
		{[]string{"exec", "-t", "shell", "--", "sh"}, "Unable to use a TTY - input is not a terminal"},
		{[]string{"exec", "shell", "-c", "nope", "--", "sh"}, "container nope is not valid for pod shell"},
		{[]string{"exec", "ghost", "--", "sh"}, `pods "ghost" not found`},
		{[]string{"exec", "deploy/x", "--", "sh"}, `exec supports pods only`},
	} {
		r := ctl("", tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("edgectl %s: %+v, want exit 1 and %q", strings.Join(tc.args, " "), r, tc.want)
		}
	}

	// A pod whose node has no agent.
	mustOK(t, ctl(fmt.Sprintf(podManifest, "lonely", "node-gone"), "apply", "-f", "-"), "apply")
	if r := ctl("", "exec", "lonely", "--", "ls"); r.code != 1 || !strings.Contains(r.stderr, `node "node-gone" is not reachable`) {
		t.Errorf("exec on a node without agent: %+v", r)
	}
}
