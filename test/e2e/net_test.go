package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// lab is a small network made for one test: a "lan" namespace holding a
// bridge, one namespace per device plugged into it with its own address,
// and a veth from the test's own namespace so the test (and the control
// plane it runs) reach the devices. Everything lives in namespaces the test
// created, plus one uniquely named veth here; all of it goes at cleanup.
type lab struct {
	id     string
	lan    string
	subnet string // first three octets, e.g. "10.77.13"
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("network tests need iproute2 (apt-get install -y iproute2)")
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{id: hex.EncodeToString(b), subnet: fmt.Sprintf("10.77.%d", 100+int(b[0])%100)}
	l.lan = "eo" + l.id + "lan"
	ipCmd(t, "netns", "add", l.lan)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.lan).Run() })
	ipCmd(t, "-n", l.lan, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", l.lan, "link", "set", "br0", "up")
	// The test's side: deleting the lan namespace deletes this veth too.
	host := "eo" + l.id
	ipCmd(t, "link", "add", host, "type", "veth", "peer", "name", "up0", "netns", l.lan)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	ipCmd(t, "-n", l.lan, "link", "set", "up0", "master", "br0", "up")
	ipCmd(t, "addr", "add", l.subnet+".254/24", "dev", host)
	ipCmd(t, "link", "set", host, "up")
	return l
}

// hostIP is the address of the test's own end.
func (l *lab) hostIP() string { return l.subnet + ".254" }

// device makes a namespace for a device with address .n on the lan.
func (l *lab) device(t *testing.T, name string, n int) (ns, ip string) {
	t.Helper()
	ns = "eo" + l.id + name
	ip = fmt.Sprintf("%s.%d", l.subnet, n)
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	port := "p" + name
	ipCmd(t, "-n", l.lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	ipCmd(t, "-n", l.lan, "link", "set", port, "master", "br0", "up")
	ipCmd(t, "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
	ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	return ns, ip
}

// agentIn starts an agent in the device namespace ns, with the pod network
// and the Service proxy on.
func agentIn(t *testing.T, ns, ip, url, node, dataDir, labels string) *proc {
	t.Helper()
	// nsenter switches only the network namespace; `ip netns exec` would
	// also remount /sys, hiding the cgroup mounts runc needs.
	return startProcCmd(t, "edge-agent", exec.Command("nsenter", "--net=/run/netns/"+ns, "--",
		filepath.Join(binDir, "edge-agent"), "--server", url, "--node-name", node,
		"--data-dir", dataDir, "--labels", labels, "--address", ip,
		"--heartbeat-interval", "1s", "--pod-network=true", "--service-proxy=true"))
}

const netApp = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: backend}
spec:
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:net
        command: [sh, -c, 'mkdir -p /www && echo "backend-$(hostname)" > /www/index.html && echo ok > /www/ready && exec httpd -f -p 8080 -h /www']
        ports: [{name: web-port, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: web-port}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  type: NodePort
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: web-port, nodePort: 30080}]
---
apiVersion: v1
kind: Pod
metadata: {name: frontend}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {site: a}
  containers:
  - name: client
    image: busybox:net
    command: [sh, -c, 'while true; do wget -qO- "http://$BACKEND_SERVICE_HOST:$BACKEND_SERVICE_PORT/" || echo fail; sleep 0.3; done']
---
apiVersion: v1
kind: Pod
metadata: {name: resolver}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {site: b}
  containers:
  - name: client
    image: busybox:net
    command: [sh, -c, 'while true; do wget -qO- http://backend/ && wget -qO- http://backend.default.svc.cluster.local/ || echo fail; sleep 0.3; done']
---
apiVersion: v1
kind: Pod
metadata: {name: lively}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {site: b}
  containers:
  - name: main
    image: busybox:net
    command: [sh, -c, 'touch /tmp/alive; exec sleep 3600']
    livenessProbe:
      exec: {command: [sh, -c, 'test -f /tmp/alive']}
      periodSeconds: 1
      failureThreshold: 1
`

// TestServicesAcrossDevices: two devices, each its own network namespace
// and address; a backend on both behind a NodePort Service, a frontend on
// device a finding it through the Service env vars and reaching the pods on
// both devices through the proxy; the NodePort reached from the test; a
// failing readiness probe takes an endpoint out; a failing liveness probe
// restarts a container.
func TestServicesAcrossDevices(t *testing.T) {
	requireOCIHost(t)
	l := newLab(t)
	nsA, ipA := l.device(t, "a", 2)
	nsB, ipB := l.device(t, "b", 3)
	tmp := t.TempDir()
	dirA, dirB := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	// Registered first, so they run last, after the agents stopped.
	t.Cleanup(func() { removeContainers(dirA); removeContainers(dirB) })

	_, url := controlPlane(t, filepath.Join(tmp, "cp"), l.hostIP()+":0")
	agentIn(t, nsA, ipA, url, "dev-a", dirA, "site=a")
	agentIn(t, nsB, ipB, url, "dev-b", dirB, "site=b")
	for _, n := range []string{"dev-a", "dev-b"} {
		mustCtl(t, url, "wait", "--for=condition=Ready", "node/"+n, "--timeout=30s")
	}
	mustCtl(t, url, "push", saveImage(t, "busybox:net", busyboxImage(t)), "--name", "busybox:net")
	// The Service exists before the frontend starts, so the frontend gets
	// its env vars: apply it first.
	docs := strings.SplitN(netApp, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: frontend}", 2)
	if r := ctl(t, url, strings.NewReader(docs[0]), "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply backend: %s", r)
	}
	// Both backends ready: the Endpoints list two addresses on two nodes.
	var backends map[string]string // pod IP → node
	eventually(t, 90*time.Second, func() error {
		var err error
		backends, err = endpointAddrs(t, url, "backend")
		if err != nil {
			return err
		}
		if len(backends) != 2 {
			return fmt.Errorf("endpoints backend: %v", backends)
		}
		return nil
	})
	if r := ctl(t, url, strings.NewReader("apiVersion: v1\nkind: Pod\nmetadata: {name: frontend}"+docs[1]), "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply frontend: %s", r)
	}

	// The frontend on device a reaches the backends on both devices.
	hosts := backendHosts(t, url)
	eventually(t, 60*time.Second, func() error {
		out := ctl(t, url, nil, "logs", "frontend").stdout
		for _, h := range hosts {
			if !strings.Contains(out, "backend-"+h) {
				return fmt.Errorf("frontend has not reached %s yet; its log:\n%s", h, tail(out, 10))
			}
		}
		return nil
	})

	// Discovery by DNS: a client on device b resolves the Service by its
	// short and full names (the agent's DNS server on the pod gateway).
	eventually(t, 60*time.Second, func() error {
		out := ctl(t, url, nil, "logs", "resolver").stdout
		if !strings.Contains(out, "backend-") {
			return fmt.Errorf("resolver has not reached the backend by name yet; its log:\n%s", tail(out, 10))
		}
		return nil
	})

	// The NodePort, from the test, on either device.
	for _, ip := range []string{ipA, ipB} {
		eventually(t, 30*time.Second, func() error {
			body, err := httpGet("http://" + ip + ":30080/")
			if err != nil || !strings.HasPrefix(body, "backend-") {
				return fmt.Errorf("NodePort on %s: %q %v", ip, body, err)
			}
			return nil
		})
	}

	// Readiness: the backend on device b stops being ready and leaves the
	// Endpoints; the NodePort then only answers with the one on a.
	podB, hostA := "", ""
	for _, p := range listPods(t, url, "app=backend") {
		if p.Spec.NodeName == "dev-b" {
			podB = p.Name
		} else {
			hostA = "backend-" + p.Name
		}
	}
	mustCtl(t, url, "exec", podB, "--", "rm", "/www/ready")
	eventually(t, 30*time.Second, func() error {
		addrs, err := endpointAddrs(t, url, "backend")
		if err != nil {
			return err
		}
		for _, node := range addrs {
			if node == "dev-b" || len(addrs) != 1 {
				return fmt.Errorf("endpoints still %v", addrs)
			}
		}
		return nil
	})
	for i := 0; i < 6; i++ {
		var body string
		eventually(t, 10*time.Second, func() error {
			var err error
			body, err = httpGet("http://" + ipB + ":30080/")
			return err
		})
		if strings.TrimSpace(body) != hostA {
			t.Fatalf("request %d through the NodePort on b answered %q, want only %q (b's backend is not ready)", i, body, hostA)
		}
	}

	// Liveness: removing the file the probe checks restarts the container.
	mustCtl(t, url, "exec", "lively", "--", "rm", "/tmp/alive")
	eventually(t, 30*time.Second, func() error {
		cs, err := containerStatus(t, url, "lively", "main")
		if err != nil {
			return err
		}
		if cs.RestartCount < 1 {
			return fmt.Errorf("lively: restartCount %d", cs.RestartCount)
		}
		return nil
	})

	for _, name := range []string{"frontend", "resolver", "lively"} {
		mustCtl(t, url, "delete", "pod", name)
	}
	mustCtl(t, url, "delete", "daemonset", "backend")
	eventually(t, 30*time.Second, func() error {
		if ids := append(runcList(t, dirA), runcList(t, dirB)...); len(ids) > 0 {
			return fmt.Errorf("containers left: %v", ids)
		}
		return nil
	})
}

// endpointAddrs returns the ready addresses of a Service's Endpoints (IP → node).
func endpointAddrs(t *testing.T, url, name string) (map[string]string, error) {
	t.Helper()
	r := ctl(t, url, nil, "get", "endpoints", name, "-o", "json")
	if r.code != 0 {
		return nil, fmt.Errorf("%s", r)
	}
	var ep manifests.Endpoints
	if err := json.Unmarshal([]byte(r.stdout), &ep); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range ep.Subsets {
		for _, a := range s.Addresses {
			if a.NodeName != nil {
				out[a.IP] = *a.NodeName
			} else {
				out[a.IP] = ""
			}
		}
	}
	return out, nil
}

func listPods(t *testing.T, url, selector string) []manifests.Pod {
	t.Helper()
	out := mustCtl(t, url, "get", "pods", "-l", selector, "-o", "json")
	var list struct {
		Items []manifests.Pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("pods -l %s: %v\n%s", selector, err, out)
	}
	return list.Items
}

// backendHosts are the hostnames (pod names) of the backend pods.
func backendHosts(t *testing.T, url string) []string {
	var hs []string
	for _, p := range listPods(t, url, "app=backend") {
		hs = append(hs, p.Name)
	}
	if len(hs) != 2 {
		t.Fatalf("backend pods: %v", hs)
	}
	return hs
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		DisableKeepAlives: true,
	}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
