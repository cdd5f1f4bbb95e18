package podnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/edgeagent/podnet"
	"github.com/edgeorch/edgeorch/images/imagetest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nats-io/nats.go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestMain(m *testing.M) {
	// The OCI runtime's container shim is the test binary re-executed.
	oci.MaybeRunShim()
	os.Exit(m.Run())
}

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

type controlPlane struct {
	cl      *client.Client
	buckets *messaging.Buckets
	url     string
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nenv := natstest.Start(t, "test-control-plane")
	ns, nc, b := nenv.Server, nenv.Conn, nenv.Buckets
	srv := api.New(store.New(b.Objects), nc, api.Options{})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	return &controlPlane{cl: client.New(nc), buckets: b, url: ns.ClientURL()}
}

func (cp *controlPlane) assign(t *testing.T, node string, pod *manifests.Pod) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, obj, err := cp.cl.Apply(ctx, pod)
	if err != nil {
		t.Fatalf("apply pod %s: %v", pod.Name, err)
	}
	stored := obj.(*manifests.Pod)
	stored.Status = manifests.PodStatus{}
	raw, _ := json.Marshal(stored)
	if _, err := cp.buckets.Assignments.Put(ctx, messaging.AssignmentKey(node, stored.Namespace, stored.Name), raw); err != nil {
		t.Fatal(err)
	}
}

func (cp *controlPlane) unassign(t *testing.T, node, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cp.buckets.Assignments.Delete(ctx, messaging.AssignmentKey(node, "default", name)); err != nil {
		t.Fatal(err)
	}
}

func (cp *controlPlane) pod(name string) (*manifests.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	obj, err := cp.cl.Get(ctx, "pods", "default", name)
	if err != nil {
		return nil, err
	}
	return obj.(*manifests.Pod), nil
}

func busyboxPod(name, image string, policy string, cmd ...string) *manifests.Pod {
	grace := int64(1)
	return &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{
			NodeName:                      "node-1",
			TerminationGracePeriodSeconds: &grace,
			RestartPolicy:                 policy,
			Containers:                    []manifests.Container{{Name: "main", Image: image, Command: cmd, ImagePullPolicy: "IfNotPresent"}},
		},
	}
}

// hostNetNS makes a network namespace standing in for the node's own, so
// the test touches none of the machine's interfaces.
func hostNetNS(t *testing.T) string {
	t.Helper()
	c := make(chan netns.NsHandle, 1)
	e := make(chan error, 1)
	go func() {
		// This thread ends in the new namespace and is never unlocked.
		lockAndNew(c, e)
	}()
	select {
	case err := <-e:
		t.Fatalf("new netns: %v", err)
	case h := <-c:
		t.Cleanup(func() { h.Close() })
		return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(h))
	}
	return ""
}

// TestAgentPodNetwork runs two OCI pods with the real runtime: they wait
// for the node's podCIDR, get distinct addresses in it, one fetches the
// other's page over the bridge, and removing them leaves no link behind.
func TestAgentPodNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (runc, network namespaces)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal("needs runc in PATH")
	}
	cp := startControlPlane(t)
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	image := reg.Push(t, "busybox:net", imagetest.Busybox(t, v1.Config{}))
	host := hostNetNS(t)
	bridge := fmt.Sprintf("et%x", time.Now().UnixNano()&0xffffff)

	dataDir := t.TempDir()
	// startAgent runs the agent with the real OCI runtime; stop ends both
	// (containers keep running, as in production).
	startAgent := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		rt, err := oci.New(ctx, oci.Options{Root: filepath.Join(dataDir, "oci")})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(cp.url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			done <- edgeagent.Run(ctx, nc, edgeagent.Config{
				NodeName: "node-1", DataDir: dataDir, Address: "192.168.254.1",
				HeartbeatInterval: 200 * time.Millisecond, Runtimes: map[string]runtime.Runtime{"oci": rt},
				BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
				Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
				PodNetwork: true, PodBridge: bridge, PodHostNetNS: host,
			})
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
			nc.Close()
			rt.Close(context.Background())
		}
	}
	stop := startAgent()
	t.Cleanup(func() {
		// Pods go first, through the agent, so that containers, sandboxes,
		// mounts and veths are removed as in production.
		for _, name := range []string{"web", "client", "client2"} {
			cp.unassign(t, "node-1", name)
		}
		eventually(t, 30*time.Second, func() error {
			if dirs, _ := filepath.Glob(filepath.Join(dataDir, "pods", "*")); len(dirs) > 0 {
				return fmt.Errorf("pods left: %v", dirs)
			}
			return nil
		})
		stop()
	})

	cp.assign(t, "node-1", busyboxPod("web", image, "Always", "sh", "-c",
		"mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"))
	eventually(t, 20*time.Second, func() error {
		p, err := cp.pod("web")
		if err != nil {
			return err
		}
		cs := p.Status.ContainerStatuses
		if len(cs) != 1 || cs[0].State.Waiting == nil || cs[0].State.Waiting.Reason != "NetworkNotReady" {
			return fmt.Errorf("web statuses %+v, want NetworkNotReady", cs)
		}
		return nil
	})

	// The control plane gives the node its podCIDR.
	eventually(t, 10*time.Second, func() error {
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer acancel()
		obj, err := cp.cl.Get(actx, "nodes", "", "node-1")
		if err != nil {
			return err
		}
		node := obj.(*manifests.Node)
		node.Spec.PodCIDR = "10.244.5.0/24"
		_, err = cp.cl.Update(actx, node)
		return err
	})
	_, cidr, _ := net.ParseCIDR("10.244.5.0/24")
	podIP := func(name string) (net.IP, error) {
		p, err := cp.pod(name)
		if err != nil {
			return nil, err
		}
		if p.Status.Phase != manifests.PodRunning && p.Status.Phase != manifests.PodSucceeded {
			return nil, fmt.Errorf("%s phase %s: %+v", name, p.Status.Phase, p.Status.ContainerStatuses)
		}
		ip := net.ParseIP(p.Status.PodIP)
		if ip == nil || !cidr.Contains(ip) {
			return nil, fmt.Errorf("%s podIP %q not in %s", name, p.Status.PodIP, cidr)
		}
		return ip, nil
	}
	var webIP net.IP
	eventually(t, 30*time.Second, func() (err error) {
		webIP, err = podIP("web")
		return err
	})

	// fetch runs a pod that gets web's page and returns the pod's IP.
	fetch := func(name string) net.IP {
		t.Helper()
		cp.assign(t, "node-1", busyboxPod(name, image, "Never", "sh", "-c",
			"for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://"+webIP.String()+":8080/ && exit 0; sleep 0.5; done; exit 1"))
		eventually(t, 40*time.Second, func() error {
			p, err := cp.pod(name)
			if err != nil {
				return err
			}
			if p.Status.Phase == manifests.PodFailed {
				logs, _ := os.ReadFile(findLog(t, dataDir, name))
				t.Fatalf("%s failed: %+v\nlog:\n%s", name, p.Status.ContainerStatuses[0].State.Terminated, logs)
			}
			if p.Status.Phase != manifests.PodSucceeded {
				return fmt.Errorf("%s phase %s", name, p.Status.Phase)
			}
			return nil
		})
		ip, err := podIP(name)
		if err != nil {
			t.Fatal(err)
		}
		if ip.Equal(webIP) {
			t.Fatalf("%s and web both got %s", name, webIP)
		}
		// The client's log holds the page it fetched.
		logs, err := os.ReadFile(findLog(t, dataDir, name))
		if err != nil || !strings.Contains(string(logs), "hello-from-web") {
			t.Fatalf("%s log %q %v", name, logs, err)
		}
		return ip
	}
	clientIP := fetch("client")

	// A restarted agent keeps web's address and link and gives the next
	// pod a new address.
	stop()
	stop = startAgent()
	if ip := fetch("client2"); ip.Equal(clientIP) {
		t.Fatalf("client2 reused %s", ip)
	}
	if ip, err := podIP("web"); err != nil || !ip.Equal(webIP) {
		t.Fatalf("web after restart: %v %v, want %s", ip, err, webIP)
	}

	// Removing the pods removes their veths.
	for _, name := range []string{"web", "client", "client2"} {
		cp.unassign(t, "node-1", name)
	}
	eventually(t, 30*time.Second, func() error {
		links := linksIn(t, host)
		var left []string
		for _, l := range links {
			if l != "lo" && l != bridge {
				left = append(left, l)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("links left: %v", left)
		}
		return nil
	})
}

func findLog(t *testing.T, dataDir, pod string) string {
	t.Helper()
	var found string
	matches, _ := globLogs(dataDir, pod)
	if len(matches) > 0 {
		found = matches[0]
	}
	if found == "" {
		t.Fatalf("no log of %s under %s", pod, dataDir)
	}
	return found
}

func linksIn(t *testing.T, path string) []string {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	links, err := podnet.LinkList(nl)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out
}
