package edgeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// controlPlane is an in-process NATS server with the buckets and the API.
type controlPlane struct {
	dir     string
	ns      *natsserver.Server
	url     string
	buckets *messaging.Buckets
	cl      *client.Client
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	dir := t.TempDir()
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return serveAPI(t, ns, dir, ns.ClientURL())
}

// serveAPI opens the buckets on the running server ns, connected as url,
// and serves the API there until the test ends.
func serveAPI(t *testing.T, ns *natsserver.Server, dir, url string) *controlPlane {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nc, err := messaging.Connect(ctx, url, "test-control-plane")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(store.New(b.Objects), nc, api.Options{})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	return &controlPlane{dir: dir, ns: ns, url: url, buckets: b, cl: client.New(nc)}
}

// runningAgent is an agent under test.
type runningAgent struct {
	rt     *wasm.Runtime
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, url, dataDir string) *runningAgent {
	t.Helper()
	return startAgentWith(t, url, dataDir, wasm.Options{})
}

// startAgentWith starts an agent (node-1, site=lab) with a wasm runtime
// made from opts; it stops when the test ends or on ra.cancel.
func startAgentWith(t *testing.T, url, dataDir string, opts wasm.Options) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := wasm.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ra := &runningAgent{rt: rt, done: make(chan error, 1)}
	cfg := Config{
		NodeName: "node-1", DataDir: dataDir, Labels: map[string]string{"site": "lab"}, Address: "10.1.2.3",
		HeartbeatInterval: 200 * time.Millisecond, Runtimes: map[string]runtime.Runtime{"wasm": rt},
		BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	go func() { ra.done <- Run(ctx, nc, cfg) }()
	stopped := false
	ra.cancel = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-ra.done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
		rt.Close(context.Background())
	}
	t.Cleanup(ra.cancel)
	return ra
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wasmPod(name, image, policy string, args ...string) *manifests.Pod {
	wasmClass := manifests.RuntimeWasm
	return &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{
			RuntimeClassName: &wasmClass,
			RestartPolicy:    policy,
			NodeName:         "node-1",
			Containers: []manifests.Container{{
				Name: "main", Image: image, Args: args,
				Env: []manifests.EnvVar{
					{Name: "GREETING", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.KeySelector{Name: "greetings", Key: "text"}}},
					{Name: "NODE_NAME", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
				},
				Resources: manifests.ResourceRequirements{Limits: manifests.ResourceList{"memory": "32Mi"}},
			}},
		},
	}
}

// assign stores pod through the API and writes its assignment, as the
// control plane's assign controller does.
func (cp *controlPlane) assign(t *testing.T, pod *manifests.Pod) *manifests.Pod {
	t.Helper()
	_, obj, err := cp.cl.Apply(ctxT(t), pod)
	if err != nil {
		t.Fatalf("apply pod %s: %v", pod.Name, err)
	}
	stored := obj.(*manifests.Pod)
	stored.Status = manifests.PodStatus{}
	raw, _ := json.Marshal(stored)
	if _, err := cp.buckets.Assignments.Put(ctxT(t), messaging.AssignmentKey("node-1", stored.Namespace, stored.Name), raw); err != nil {
		t.Fatal(err)
	}
	return stored
}

func (cp *controlPlane) pod(t *testing.T, name string) *manifests.Pod {
	t.Helper()
	obj, err := cp.cl.Get(ctxT(t), "pods", "default", name)
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	return obj.(*manifests.Pod)
}

func podDirs(t *testing.T, dataDir string) []string {
	entries, err := os.ReadDir(filepath.Join(dataDir, "pods"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestAgentEndToEnd(t *testing.T) {
	cp := startControlPlane(t)
	ctx := ctxT(t)
	helloFile, err := os.Open(testmodules.Path(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer helloFile.Close()
	digest, err := cp.cl.PushModule(ctx, "hello:v1", helloFile)
	if err != nil {
		t.Fatal(err)
	}
	exitFile, err := os.Open(testmodules.Path(t, "exit"))
	if err != nil {
		t.Fatal(err)
	}
	defer exitFile.Close()
	if _, err := cp.cl.PushModule(ctx, "exit:v1", exitFile); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.cl.Apply(ctx, &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "greetings", Namespace: "default"}, Data: map[string]string{"text": "hi"}}); err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	ag := startAgent(t, cp.url, dataDir)

	// Registration and heartbeat.
	eventually(t, 10*time.Second, func() error {
		obj, err := cp.cl.Get(ctx, "nodes", "", "node-1")
		if err != nil {
			return err
		}
		n := obj.(*manifests.Node)
		if n.Labels["site"] != "lab" || n.Labels["kubernetes.io/hostname"] != "node-1" || n.Labels["node.edge.io/runtime-wasm"] != "true" {
			return fmt.Errorf("labels %v", n.Labels)
		}
		if len(n.Status.RuntimeHandlers) != 1 || n.Status.RuntimeHandlers[0].Name != "wasm" {
			return fmt.Errorf("runtime handlers %+v", n.Status.RuntimeHandlers)
		}
		if n.Status.Capacity["pods"] != "110" || !strings.HasSuffix(string(n.Status.Capacity["memory"]), "Mi") {
			return fmt.Errorf("capacity %v", n.Status.Capacity)
		}
		if len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Address != "10.1.2.3" {
			return fmt.Errorf("addresses %+v", n.Status.Addresses)
		}
		return nil
	})
	// The first lease follows the registration.
	eventually(t, 5*time.Second, func() error {
		e, err := cp.buckets.Heartbeats.Get(ctx, messaging.LeaseKey("node-1"))
		if err != nil {
			return fmt.Errorf("lease: %w", err)
		}
		var lease client.Lease
		if err := json.Unmarshal(e.Value(), &lease); err != nil || lease.Node != "node-1" {
			return fmt.Errorf("lease %s: %v", e.Value(), err)
		}
		return nil
	})

	// A long-running pod: Running, with its env from the configmap.
	hello := cp.assign(t, wasmPod("hello", "hello:v1", "Always"))
	eventually(t, 15*time.Second, func() error {
		p := cp.pod(t, "hello")
		cs := p.Status.ContainerStatuses
		if p.Status.Phase != "Running" || len(cs) != 1 || !cs[0].Ready || cs[0].State.Running == nil {
			return fmt.Errorf("status %+v", p.Status)
		}
		if cs[0].ImageID != "sha256:"+digest || !strings.HasPrefix(cs[0].ContainerID, "wasm://") || p.Status.PodIP != "10.1.2.3" {
			return fmt.Errorf("container status %+v pod ip %q", cs[0], p.Status.PodIP)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dataDir, "modules", "sha256", digest+".wasm")); err != nil {
		t.Fatalf("module not cached: %v", err)
	}
	// Logs through the node's logs subject.
	eventually(t, 10*time.Second, func() error {
		raw, _ := json.Marshal(client.LogsRequest{Namespace: "default", Pod: "hello"})
		m, err := cp.cl.Conn().Request(messaging.NodeSubject("node-1", messaging.NodeVerbLogs), raw, 5*time.Second)
		if err != nil {
			return err
		}
		var chunk client.LogsChunk
		if err := json.Unmarshal(m.Data, &chunk); err != nil {
			return err
		}
		if chunk.Error != nil || !chunk.EOF || !strings.Contains(string(chunk.Data), "hi from node-1 #1") {
			return fmt.Errorf("logs chunk %+v (%q)", chunk, chunk.Data)
		}
		return nil
	})

	// Following: chunks arrive as requests on the inbox while it answers.
	inbox := nats.NewInbox()
	got := make(chan string, 100)
	sub, err := cp.cl.Conn().Subscribe(inbox, func(m *nats.Msg) {
		var chunk client.LogsChunk
		json.Unmarshal(m.Data, &chunk)
		got <- string(chunk.Data)
		m.Respond(nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(client.LogsRequest{Namespace: "default", Pod: "hello", Container: "main", Follow: true, Inbox: inbox})
	if _, err := cp.cl.Conn().Request(messaging.NodeSubject("node-1", messaging.NodeVerbLogs), raw, 5*time.Second); err != nil {
		t.Fatalf("follow logs: %v", err)
	}
	var followed strings.Builder
	eventually(t, 10*time.Second, func() error {
		for {
			select {
			case s := <-got:
				followed.WriteString(s)
				continue
			default:
			}
			break
		}
		if !strings.Contains(followed.String(), "hi from node-1 #3") {
			return fmt.Errorf("followed so far: %q", followed.String())
		}
		return nil
	})
	sub.Unsubscribe()

	// restartPolicy Never and exit 3: Failed.
	cp.assign(t, wasmPod("exiter", "exit:v1", "Never", "3"))
	// restartPolicy Always and exit 1: restarted with back-off, lastState kept.
	cp.assign(t, wasmPod("crasher", "exit:v1", "Always", "1"))
	eventually(t, 15*time.Second, func() error {
		p := cp.pod(t, "exiter")
		cs := p.Status.ContainerStatuses
		if p.Status.Phase != "Failed" || len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 3 || cs[0].State.Terminated.Reason != "Error" {
			return fmt.Errorf("exiter status %+v", p.Status)
		}
		return nil
	})
	eventually(t, 15*time.Second, func() error {
		p := cp.pod(t, "crasher")
		cs := p.Status.ContainerStatuses
		if len(cs) != 1 || cs[0].RestartCount < 2 || cs[0].LastTerminationState.Terminated == nil || cs[0].LastTerminationState.Terminated.ExitCode != 1 {
			return fmt.Errorf("crasher status %+v", p.Status)
		}
		if p.Status.Phase != "Running" {
			return fmt.Errorf("crasher phase %s", p.Status.Phase)
		}
		return nil
	})
	// The previous run's log of the crash-looping container.
	eventually(t, 10*time.Second, func() error {
		raw, _ := json.Marshal(client.LogsRequest{Namespace: "default", Pod: "crasher", Previous: true})
		m, err := cp.cl.Conn().Request(messaging.NodeSubject("node-1", messaging.NodeVerbLogs), raw, 5*time.Second)
		if err != nil {
			return err
		}
		var chunk client.LogsChunk
		json.Unmarshal(m.Data, &chunk)
		if chunk.Error != nil || string(chunk.Data) != "exiting with code 1\n" {
			return fmt.Errorf("previous logs %+v (%q)", chunk.Error, chunk.Data)
		}
		return nil
	})
	// An unknown pod is NotFound.
	raw, _ = json.Marshal(client.LogsRequest{Namespace: "default", Pod: "nosuch"})
	if m, err := cp.cl.Conn().Request(messaging.NodeSubject("node-1", messaging.NodeVerbLogs), raw, 5*time.Second); err != nil {
		t.Fatal(err)
	} else {
		var chunk client.LogsChunk
		json.Unmarshal(m.Data, &chunk)
		if chunk.Error == nil || chunk.Error.Code != client.CodeNotFound {
			t.Fatalf("logs of an unknown pod: %+v", chunk)
		}
	}

	// A missing module: ErrImagePull, then ImagePullBackOff.
	cp.assign(t, wasmPod("nomodule", "missing:v1", "Always"))
	eventually(t, 10*time.Second, func() error {
		p := cp.pod(t, "nomodule")
		cs := p.Status.ContainerStatuses
		if len(cs) != 1 || cs[0].State.Waiting == nil || cs[0].State.Waiting.Reason != "ImagePullBackOff" || !strings.Contains(cs[0].State.Waiting.Message, "missing:v1") || p.Status.Phase != "Pending" {
			return fmt.Errorf("nomodule status %+v", p.Status)
		}
		return nil
	})

	// Unassigning removes the pod from the node.
	if err := cp.buckets.Assignments.Delete(ctx, messaging.AssignmentKey("node-1", "default", "exiter")); err != nil {
		t.Fatal(err)
	}
	if err := cp.buckets.Assignments.Delete(ctx, messaging.AssignmentKey("node-1", "default", "nomodule")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		for _, d := range podDirs(t, dataDir) {
			if strings.HasPrefix(d, "default_exiter_") || strings.HasPrefix(d, "default_nomodule_") {
				return fmt.Errorf("pod dir %s still there", d)
			}
		}
		return nil
	})

	// Restart the agent on the same data dir with NATS down: the pods in
	// its state start again before it can reach anything.
	helloRV := cp.pod(t, "hello").ResourceVersion
	ag.cancel()
	// Unassigned while the agent is away: removed at the resync.
	if err := cp.buckets.Assignments.Delete(ctx, messaging.AssignmentKey("node-1", "default", "crasher")); err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(dataDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := db.Pods()
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var helloRestarts int32 = -1
	for _, r := range recs {
		names = append(names, r.Pod.Name)
		if r.Pod.Name == "hello" {
			helloRestarts = r.Containers["main"].RestartCount
		}
	}
	if len(recs) != 2 || helloRestarts != 0 { // hello and crasher
		t.Fatalf("state after stop: pods %v, hello restarts %d", names, helloRestarts)
	}
	cp.ns.Shutdown()
	cp.ns.WaitForShutdown()

	ag2 := startAgent(t, cp.url, dataDir)
	eventually(t, 10*time.Second, func() error {
		state := runtime.StateRunning
		list, err := ag2.rt.ListContainers(ctxT(t), runtime.ContainerFilter{State: &state})
		if err != nil {
			return err
		}
		for _, c := range list {
			if c.Labels["io.kubernetes.pod.name"] == "hello" {
				return nil
			}
		}
		return fmt.Errorf("hello not running again (%d running containers)", len(list))
	})
	logFile := filepath.Join(dataDir, "pods", "default_hello_"+hello.UID, "logs", "main", "0.log")
	eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(logFile)
		if err != nil {
			return err
		}
		if strings.Count(string(b), "hi from node-1 #1\n") < 2 {
			return fmt.Errorf("log of the restarted hello has no second run yet")
		}
		return nil
	})

	// The server comes back on the same port and store: the agent resyncs,
	// drops the pod unassigned meanwhile and reports hello's status again.
	u, err := url.Parse(cp.url)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	ns2, err := messaging.StartServer(messaging.ServerConfig{DataDir: cp.dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns2.Shutdown(); ns2.WaitForShutdown() })
	eventually(t, 15*time.Second, func() error {
		for _, d := range podDirs(t, dataDir) {
			if strings.HasPrefix(d, "default_crasher_") {
				return fmt.Errorf("pod dir %s still there after the resync", d)
			}
		}
		return nil
	})
	eventually(t, 15*time.Second, func() error {
		p, err := cp.cl.Get(ctxT(t), "pods", "default", "hello")
		if err != nil {
			return err
		}
		pod := p.(*manifests.Pod)
		if pod.ResourceVersion == helloRV || pod.Status.Phase != "Running" || pod.Status.ContainerStatuses[0].RestartCount != 0 {
			return fmt.Errorf("hello after reconnect: rv %s phase %s", pod.ResourceVersion, pod.Status.Phase)
		}
		return nil
	})
}
