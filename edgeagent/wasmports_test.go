package edgeagent

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// TestWasmPodListensOnContainerPort runs the httpd module as a wasm pod
// declaring a containerPort: the runtime opens the listener, the httpGet
// readiness probe (127.0.0.1, host network) makes the pod Ready, and the
// pod answers on the port.
func TestWasmPodListensOnContainerPort(t *testing.T) {
	cp := startControlPlane(t)
	ctx := ctxT(t)
	f, err := os.Open(testmodules.Path(t, "httpd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := cp.cl.PushModule(ctx, "httpd:v1", f); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	startAgent(t, cp.url, t.TempDir())

	pod := handlerPod("web", manifests.RuntimeWasm, "httpd:v1")
	c := &pod.Spec.Containers[0]
	c.Env = []manifests.EnvVar{{Name: "GREETING", Value: "pod"}}
	c.Ports = []manifests.ContainerPort{{Name: "http", ContainerPort: int32(port)}}
	c.ReadinessProbe = &manifests.Probe{
		HTTPGet:       &manifests.HTTPGetAction{Path: "/", Port: manifests.FromString("http")},
		PeriodSeconds: 1,
	}
	cp.assign(t, pod)
	eventually(t, 20*time.Second, func() error {
		p := cp.pod(t, "web")
		for _, cond := range p.Status.Conditions {
			if cond.Type == manifests.PodReady && cond.Status == manifests.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("pod web not ready: phase %q, conditions %+v", p.Status.Phase, p.Status.Conditions)
	})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "hello from wasm pod\n" {
		t.Fatalf("body %q, %v", body, err)
	}
}
