// Package e2e runs the real binaries: a control plane and two agents on
// random loopback ports, driven by edgectl as a subprocess.
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

type podView struct {
	Metadata struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase             string `json:"phase"`
		ContainerStatuses []struct {
			RestartCount int `json:"restartCount"`
			State        struct {
				Running    *struct{} `json:"running"`
				Terminated *struct {
					ExitCode int    `json:"exitCode"`
					Reason   string `json:"reason"`
				} `json:"terminated"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func getPod(t *testing.T, url, name string) (podView, result) {
	t.Helper()
	r := ctl(t, url, nil, "get", "pod", name, "-o", "json")
	var p podView
	if r.code == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatalf("get pod %s -o json: %v\n%s", name, err, r.stdout)
		}
	}
	return p, r
}

const helloPod = `apiVersion: v1
kind: Pod
metadata:
  name: hello
  labels: {app: hello, tier: demo}
spec:
  runtimeClassName: wasm
  nodeSelector: {site: b}
  containers:
  - name: hello
    image: hello@sha256:%s
    env:
    - {name: GREETING, value: "hello e2e"}
    resources:
      limits: {memory: 16Mi}
`

const exitPod = `apiVersion: v1
kind: Pod
metadata:
  name: exiter
spec:
  runtimeClassName: wasm
  restartPolicy: Never
  nodeSelector: {site: a}
  containers:
  - name: exit
    image: exit:v1
    args: ["3"]
`

func TestCoreLoop(t *testing.T) {
	tmp := t.TempDir()
	cpDir := filepath.Join(tmp, "cp")
	cp, url := controlPlane(t, cpDir, "127.0.0.1:0")
	agent(t, url, "node-a", filepath.Join(tmp, "a"), "site=a")
	agent(t, url, "node-b", filepath.Join(tmp, "b"), "site=b")

	for _, n := range []string{"node-a", "node-b"} {
		mustCtl(t, url, "wait", "--for=condition=Ready", "node/"+n, "--timeout=30s")
	}
	nodes := mustCtl(t, url, "get", "nodes")
	if !strings.Contains(nodes, "node-a") || !strings.Contains(nodes, "node-b") {
		t.Fatalf("get nodes:\n%s", nodes)
	}

	// Push the modules; the pod names hello by digest.
	out := mustCtl(t, url, "push", module(t, "hello"), "--name", "hello:v1")
	digest := regexp.MustCompile(`sha256:([0-9a-f]{64})`).FindStringSubmatch(out)
	if digest == nil {
		t.Fatalf("push printed no digest: %q", out)
	}
	mustCtl(t, url, "push", module(t, "exit"), "--name", "exit:v1")

	// Apply from stdin; Running on the node the selector picks.
	r := ctl(t, url, strings.NewReader(fmt.Sprintf(helloPod, digest[1])), "apply", "-f", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "pod/hello created") {
		t.Fatalf("apply: %s", r)
	}
	mustCtl(t, url, "wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
	p, _ := getPod(t, url, "hello")
	if p.Spec.NodeName != "node-b" || p.Status.Phase != "Running" {
		t.Fatalf("hello: node %q phase %q, want node-b Running", p.Spec.NodeName, p.Status.Phase)
	}
	// Nodes register their runtimes before they turn Ready, so the pod was
	// placed at the first try. Events are recorded in the background: poll.
	eventually(t, 10*time.Second, func() error {
		if d := mustCtl(t, url, "describe", "pod", "hello"); strings.Contains(d, "FailedScheduling") || !strings.Contains(d, "Scheduled") {
			return fmt.Errorf("describe pod hello: want one Scheduled event and no FailedScheduling:\n%s", d)
		}
		return nil
	})
	// Applying the same manifest again changes nothing.
	r = ctl(t, url, strings.NewReader(fmt.Sprintf(helloPod, digest[1])), "apply", "-f", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "pod/hello unchanged") {
		t.Fatalf("second apply: %s", r)
	}
	// Selectors, -o name and -A.
	if got := mustCtl(t, url, "get", "pods", "-l", "app in (hello,x),tier!=db", "-o", "name"); strings.TrimSpace(got) != "pod/hello" {
		t.Fatalf("get -l: %q", got)
	}
	if got := mustCtl(t, url, "get", "pods", "-A"); !strings.Contains(got, "NAMESPACE") || !strings.Contains(got, "hello") {
		t.Fatalf("get -A:\n%s", got)
	}

	// Logs carry the module's output.
	eventually(t, 20*time.Second, func() error {
		r := ctl(t, url, nil, "logs", "hello")
		if r.code != 0 || !strings.Contains(r.stdout, "hello") {
			return fmt.Errorf("logs: %s", r)
		}
		return nil
	})

	// A container exiting non-zero under restartPolicy Never: Failed, exit 3.
	r = ctl(t, url, strings.NewReader(exitPod), "apply", "-f", "-")
	if r.code != 0 {
		t.Fatalf("apply exiter: %s", r)
	}
	eventually(t, 30*time.Second, func() error {
		p, r := getPod(t, url, "exiter")
		if r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		cs := p.Status.ContainerStatuses
		if p.Status.Phase != "Failed" || len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 3 {
			return fmt.Errorf("exiter: phase %q statuses %+v", p.Status.Phase, cs)
		}
		if p.Spec.NodeName != "node-a" {
			t.Fatalf("exiter on %q, want node-a", p.Spec.NodeName)
		}
		return nil
	})

	// A malformed manifest is rejected with its field path and nothing is stored.
	bad := strings.Replace(fmt.Sprintf(helloPod, digest[1]), "name: hello\n  labels", "name: broken\n  labels", 1)
	bad = strings.Replace(bad, "    image:", "    imagee:", 1)
	r = ctl(t, url, strings.NewReader(bad), "apply", "-f", "-")
	if r.code == 0 || !strings.Contains(r.stderr, "spec.containers[0].imagee") {
		t.Fatalf("malformed manifest: want an error naming spec.containers[0].imagee, got %s", r)
	}
	if _, r := getPod(t, url, "broken"); r.code == 0 || !strings.Contains(r.stderr, "NotFound") {
		t.Fatalf("broken pod stored: %s", r)
	}

	// A stale update is a Conflict and changes nothing.
	cm := func(v string) *strings.Reader {
		return strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: \"" + v + "\"}\n")
	}
	mustApply(t, url, cm("1"), "configmap/settings created")
	var cmObj struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	json.Unmarshal([]byte(mustCtl(t, url, "get", "cm", "settings", "-o", "json")), &cmObj)
	staleRV := cmObj.Metadata.ResourceVersion
	mustApply(t, url, cm("2"), "configmap/settings configured")
	stale := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, resourceVersion: \"" + staleRV + "\"}\ndata: {level: \"3\"}\n"
	r = ctl(t, url, strings.NewReader(stale), "apply", "-f", "-")
	if r.code == 0 || !strings.Contains(r.stderr, "Conflict") {
		t.Fatalf("stale update: want Conflict, got %s", r)
	}
	json.Unmarshal([]byte(mustCtl(t, url, "get", "cm", "settings", "-o", "json")), &cmObj)
	if cmObj.Data["level"] != "2" {
		t.Fatalf("after the stale update level = %q, want 2", cmObj.Data["level"])
	}

	// Restart the control plane on the same data dir and port: state intact,
	// the pod was not restarted by it.
	before, _ := getPod(t, url, "hello")
	cp.stop(t)
	_, url2 := controlPlane(t, cpDir, strings.TrimPrefix(url, "nats://"))
	if url2 != url {
		t.Fatalf("control plane came back on %s, want %s", url2, url)
	}
	eventually(t, 30*time.Second, func() error {
		p, r := getPod(t, url, "hello")
		if r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		if p.Status.Phase != "Running" || p.Spec.NodeName != "node-b" {
			return fmt.Errorf("after restart: phase %q node %q", p.Status.Phase, p.Spec.NodeName)
		}
		return nil
	})
	after, _ := getPod(t, url, "hello")
	if len(after.Status.ContainerStatuses) != 1 || after.Status.ContainerStatuses[0].RestartCount != before.Status.ContainerStatuses[0].RestartCount {
		t.Fatalf("restart counts changed across a control-plane restart: %+v -> %+v", before.Status, after.Status)
	}
	json.Unmarshal([]byte(mustCtl(t, url, "get", "cm", "settings", "-o", "json")), &cmObj)
	if cmObj.Data["level"] != "2" {
		t.Fatalf("configmap after restart: %v", cmObj.Data)
	}
	for _, n := range []string{"node-a", "node-b"} {
		mustCtl(t, url, "wait", "--for=condition=Ready", "node/"+n, "--timeout=30s")
	}

	// Delete: gone from the API and stopped on the device.
	if out := mustCtl(t, url, "delete", "pod", "hello"); !strings.Contains(out, `pod "hello" deleted`) {
		t.Fatalf("delete: %q", out)
	}
	if _, r := getPod(t, url, "hello"); r.code == 0 {
		t.Fatalf("hello still there after delete")
	}
	podDirs := filepath.Join(tmp, "b", "pods")
	eventually(t, 20*time.Second, func() error {
		entries, _ := os.ReadDir(podDirs)
		for _, e := range entries {
			if strings.Contains(e.Name(), "hello") {
				return fmt.Errorf("pod dir %s still on node-b", e.Name())
			}
		}
		return nil
	})
}

func mustApply(t *testing.T, url string, manifest *strings.Reader, want string) {
	t.Helper()
	r := ctl(t, url, manifest, "apply", "-f", "-")
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("apply: want %q, got %s", want, r)
	}
}
