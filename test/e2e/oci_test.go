package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// ociPod decodes `edgectl get pod NAME -o json`.
func ociPod(t *testing.T, url, name string) *manifests.Pod {
	t.Helper()
	out := mustCtl(t, url, "get", "pod", name, "-o", "json")
	var p manifests.Pod
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("decode pod %s: %v\n%s", name, err, out)
	}
	return &p
}

// containerStatus returns the status of container c of pod name.
func containerStatus(t *testing.T, url, name, c string) (manifests.ContainerStatus, error) {
	t.Helper()
	p := ociPod(t, url, name)
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == c {
			return cs, nil
		}
	}
	return manifests.ContainerStatus{}, fmt.Errorf("pod %s: no status of container %s yet (phase %q)", name, c, p.Status.Phase)
}

func waitRunning(t *testing.T, url, name, c string) manifests.ContainerStatus {
	t.Helper()
	var cs manifests.ContainerStatus
	eventually(t, 60*time.Second, func() error {
		var err error
		cs, err = containerStatus(t, url, name, c)
		if err != nil {
			return err
		}
		if cs.State.Running == nil {
			return fmt.Errorf("pod %s container %s: %+v", name, c, cs.State)
		}
		return nil
	})
	return cs
}

func waitLogs(t *testing.T, url, pod, c string, want ...string) string {
	t.Helper()
	var out string
	eventually(t, 30*time.Second, func() error {
		r := ctl(t, url, nil, "logs", pod, "-c", c)
		out = r.stdout
		for _, w := range want {
			if r.code != 0 || !strings.Contains(out, w) {
				return fmt.Errorf("logs of %s/%s: want %q: %s", pod, c, w, r)
			}
		}
		return nil
	})
	return out
}

// runcList lists the container IDs runc knows under the agent's root.
func runcList(t *testing.T, agentDir string) []string {
	t.Helper()
	out, err := exec.Command("runc", "--root", filepath.Join(agentDir, "oci", "runc"), "list", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("runc list: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// runcPid is the init pid of a container, "" when runc does not know it
// or it is not running.
func runcPid(t *testing.T, agentDir, id string) string {
	t.Helper()
	out, err := exec.Command("runc", "--root", filepath.Join(agentDir, "oci", "runc"), "state", id).Output()
	if err != nil {
		return ""
	}
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if json.Unmarshal(out, &st) != nil || st.Status != "running" {
		return ""
	}
	return fmt.Sprint(st.Pid)
}

// removeContainers kills and deletes whatever runc still runs under the
// agent's root, so that a failed test leaves no processes behind.
func removeContainers(agentDir string) {
	root := filepath.Join(agentDir, "oci", "runc")
	out, _ := exec.Command("runc", "--root", root, "list", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		exec.Command("runc", "--root", root, "delete", "--force", id).Run()
	}
}

const sleeperPod = `apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {key: the-configured-value}
---
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %s
    command: [sh, -c, 'echo started; cat /cfg/key; echo; sleep 3600']
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes:
  - name: cfg
    configMap: {name: settings}
`

const webPod = `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: server
    image: %[1]s
    command: [sh, -c, 'mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www']
  - name: client
    image: %[1]s
    command: [sh, -c, 'until wget -qO- http://127.0.0.1:8080/; do sleep 0.2; done; exec sleep 3600']
`

const hogPod = `apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: %s
    command: [dd, if=/dev/zero, of=/dev/null, bs=96M, count=1]
    resources:
      limits: {memory: 32Mi}
`

const ghostPod = `apiVersion: v1
kind: Pod
metadata: {name: ghost}
spec:
  containers:
  - name: main
    image: %s
`

const badCommandPod = `apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: %s
    command: [/bin/nosuch]
`

const airPod = `apiVersion: v1
kind: Pod
metadata: {name: air}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:air
    command: [sh, -c, 'echo airgapped; exec sleep 3600']
`

func TestOCIPods(t *testing.T) {
	requireOCIHost(t)
	img := busyboxImage(t)
	reg := startRegistry(t)
	image := reg + "/busybox:v1"
	pushImage(t, image, img)
	tarPath := saveImage(t, "busybox:air", img)

	tmp := t.TempDir()
	agentDir := filepath.Join(tmp, "agent")
	// Registered first, so it runs last: after the agent has stopped.
	t.Cleanup(func() { removeContainers(agentDir) })
	_, url := controlPlane(t, filepath.Join(tmp, "cp"), "127.0.0.1:0")
	ag := agent(t, url, "box", agentDir, "site=lab")
	mustCtl(t, url, "wait", "--for=condition=Ready", "node/box", "--timeout=30s")
	if out := mustCtl(t, url, "get", "node", "box", "-o", "json"); !strings.Contains(out, `"node.edge.io/runtime-oci": "true"`) {
		t.Fatalf("node box does not advertise oci:\n%s", out)
	}
	apply := func(manifest string) {
		t.Helper()
		if r := ctl(t, url, strings.NewReader(manifest), "apply", "-f", "-"); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
	}

	// A pod from the registry with a configMap volume.
	apply(fmt.Sprintf(sleeperPod, image))
	sleeper := waitRunning(t, url, "sleeper", "main")
	waitLogs(t, url, "sleeper", "main", "started\n", "the-configured-value")
	if !strings.HasPrefix(sleeper.ImageID, "sha256:") || !strings.HasPrefix(sleeper.ContainerID, "oci://") {
		t.Errorf("sleeper status: imageID %q containerID %q", sleeper.ImageID, sleeper.ContainerID)
	}

	// Exec: output, exit code, stdin.
	if r := ctl(t, url, nil, "exec", "sleeper", "--", "id", "-u"); r.code != 0 || r.stdout != "0\n" {
		t.Errorf("exec id -u: %s", r)
	}
	if r := ctl(t, url, nil, "exec", "sleeper", "--", "sh", "-c", "echo oops >&2; exit 7"); r.code != 7 || !strings.Contains(r.stderr, "oops") {
		t.Errorf("exec exit 7: %s", r)
	}
	if r := ctl(t, url, strings.NewReader("through stdin\n"), "exec", "-i", "sleeper", "--", "cat"); r.code != 0 || r.stdout != "through stdin\n" {
		t.Errorf("exec -i cat: %s", r)
	}

	// Two containers share the pod's localhost.
	apply(fmt.Sprintf(webPod, image))
	waitRunning(t, url, "web", "server")
	waitLogs(t, url, "web", "client", "hello-from-httpd")

	// A memory hog is OOM-killed.
	apply(fmt.Sprintf(hogPod, image))
	eventually(t, 60*time.Second, func() error {
		cs, err := containerStatus(t, url, "hog", "hog")
		if err != nil {
			return err
		}
		if cs.State.Terminated == nil || cs.State.Terminated.Reason != "OOMKilled" {
			return fmt.Errorf("hog: %+v", cs.State)
		}
		return nil
	})

	// A missing image: a clear waiting reason.
	apply(fmt.Sprintf(ghostPod, reg+"/nosuch:v1"))
	eventually(t, 30*time.Second, func() error {
		cs, err := containerStatus(t, url, "ghost", "main")
		if err != nil {
			return err
		}
		w := cs.State.Waiting
		if w == nil || (w.Reason != "ErrImagePull" && w.Reason != "ImagePullBackOff") || !strings.Contains(w.Message, "not found") {
			return fmt.Errorf("ghost: %+v", cs.State)
		}
		return nil
	})

	// A command missing from the image: StartError, as with the kubelet.
	apply(fmt.Sprintf(badCommandPod, image))
	eventually(t, 30*time.Second, func() error {
		cs, err := containerStatus(t, url, "bad", "main")
		if err != nil {
			return err
		}
		if term := cs.State.Terminated; term == nil || term.Reason != "StartError" || !strings.Contains(term.Message, "nosuch") {
			return fmt.Errorf("bad: %+v", cs.State)
		}
		return nil
	})

	// Airgapped: an image pushed to the control plane, no registry.
	if r := ctl(t, url, nil, "push", tarPath, "--name", "busybox:air"); r.code != 0 {
		t.Errorf("push image tarball: %s", r)
	} else {
		apply(airPod)
		waitRunning(t, url, "air", "main")
		waitLogs(t, url, "air", "main", "airgapped")
	}

	// Agent restart: the container keeps running and is adopted.
	id := strings.TrimPrefix(sleeper.ContainerID, "oci://")
	pid := runcPid(t, agentDir, id)
	if pid == "" {
		t.Fatalf("runc does not run container %s; it knows %v", id, runcList(t, agentDir))
	}
	ag.stop(t)
	if got := runcPid(t, agentDir, id); got != pid {
		t.Fatalf("after the agent stopped, container %s has pid %q, want %s still running", id, got, pid)
	}
	agent(t, url, "box", agentDir, "site=lab")
	eventually(t, 30*time.Second, func() error {
		r := ctl(t, url, nil, "exec", "sleeper", "--", "echo", "back")
		if r.code != 0 || r.stdout != "back\n" {
			return fmt.Errorf("exec after restart: %s", r)
		}
		return nil
	})
	cs, err := containerStatus(t, url, "sleeper", "main")
	if err != nil {
		t.Fatal(err)
	}
	if cs.RestartCount != 0 || cs.ContainerID != sleeper.ContainerID || cs.State.Running == nil ||
		!cs.State.Running.StartedAt.Equal(sleeper.State.Running.StartedAt) {
		t.Fatalf("after agent restart: %+v, was %+v", cs, sleeper)
	}
	if got := runcPid(t, agentDir, id); got != pid {
		t.Fatalf("after the agent restarted, container %s has pid %q, want %s", id, got, pid)
	}
	if logs := waitLogs(t, url, "sleeper", "main", "started"); strings.Count(logs, "started") != 1 {
		t.Fatalf("sleeper started again:\n%s", logs)
	}

	// Deleting the pods removes their containers.
	mustCtl(t, url, "delete", "pod", "sleeper")
	eventually(t, 30*time.Second, func() error {
		for _, c := range runcList(t, agentDir) {
			if c == id {
				return fmt.Errorf("container %s of the deleted pod still listed by runc", id)
			}
		}
		return nil
	})
	for _, p := range []string{"web", "hog", "ghost", "bad", "air"} {
		ctl(t, url, nil, "delete", "pod", p)
	}
	eventually(t, 30*time.Second, func() error {
		if ids := runcList(t, agentDir); len(ids) != 0 {
			return fmt.Errorf("runc still lists %v", ids)
		}
		return nil
	})
}
