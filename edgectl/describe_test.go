package edgectl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestDescribePod(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := samplePod()
	p.UID = "u1"
	p.Labels = map[string]string{"app": "hello", "tier": "demo"}
	p.Spec.NodeName = "node-b"
	p.Spec.Containers[0].Env = []manifests.EnvVar{
		{Name: "GREETING", Value: "hi"},
		{Name: "LEVEL", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.KeySelector{Name: "settings", Key: "level"}}},
	}
	p.Spec.Containers[0].Resources.Limits = manifests.ResourceList{"memory": "16Mi"}
	p.Status.PodIP = "10.1.0.5"
	p.Status.HostIP = "192.168.1.4"
	p.Status.Conditions = []manifests.PodCondition{{Type: "Ready", Status: "True"}}
	p.Status.ContainerStatuses = []manifests.ContainerStatus{{
		Name: "hello", Ready: true, RestartCount: 2,
		State:                manifests.ContainerState{Running: &manifests.ContainerStateRunning{StartedAt: now.Add(-time.Minute)}},
		LastTerminationState: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: 3, Reason: "Error"}},
	}}
	mine := &manifests.Event{ObjectMeta: manifests.ObjectMeta{Name: "e1", Namespace: "default"}, Type: "Normal", Reason: "Scheduled",
		InvolvedObject: manifests.ObjectReference{Kind: "Pod", Name: "hello", Namespace: "default", UID: "u1"},
		Message:        "Successfully assigned default/hello to node-b", Source: manifests.EventSource{Component: "default-scheduler"},
		LastTimestamp: now.Add(-30 * time.Second), FirstTimestamp: now.Add(-2 * time.Minute), Count: 3}
	other := &manifests.Event{ObjectMeta: manifests.ObjectMeta{Name: "e2", Namespace: "default"}, Reason: "Other",
		InvolvedObject: manifests.ObjectReference{Kind: "Pod", Name: "hello", Namespace: "default", UID: "old-uid"}}
	unrelated := &manifests.Event{ObjectMeta: manifests.ObjectMeta{Name: "e3", Namespace: "default"}, Reason: "Unrelated",
		InvolvedObject: manifests.ObjectReference{Kind: "ConfigMap", Name: "hello", Namespace: "default"}}
	events := matchEvents(p, []manifests.Object{mine, other, unrelated})
	if len(events) != 1 || events[0] != mine {
		t.Fatalf("matchEvents: %+v", events)
	}
	var buf bytes.Buffer
	if err := describeObject(&buf, p, events, now); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"Name:", "hello", "Namespace:", "default", "Node:", "node-b/192.168.1.4",
		"Labels:", "app=hello", "tier=demo", "Status:", "Running", "IP:", "10.1.0.5",
		"Containers:", "Image:", "hello:v1", "State:", "Started:", "Last State:", "Terminated", "Exit Code:", "3",
		"Restart Count:", "2", "Limits:", "memory:", "16Mi", "GREETING:", "hi",
		"<set to the key 'level' of config map 'settings'>",
		"Conditions:", "Ready", "Events:", "Scheduled", "30s (x3 over 2m", "default-scheduler", "Successfully assigned default/hello to node-b",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "tier=demo") < strings.Index(out, "app=hello") {
		t.Errorf("labels not sorted:\n%s", out)
	}
}

func TestDescribeNodeAndConfigMap(t *testing.T) {
	n := &manifests.Node{ObjectMeta: manifests.ObjectMeta{Name: "node-a"}}
	n.Status.Conditions = []manifests.NodeCondition{{Type: "Ready", Status: "True", Reason: "AgentReady"}}
	n.Status.Addresses = []manifests.NodeAddress{{Type: "InternalIP", Address: "192.168.1.4"}}
	n.Status.Capacity = manifests.ResourceList{"cpu": "4", "memory": "1Gi"}
	n.Status.NodeInfo.Architecture = "arm64"
	n.Status.RuntimeHandlers = []manifests.NodeRuntimeHandler{{Name: "wasm"}}
	var buf bytes.Buffer
	if err := describeObject(&buf, n, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"Name:", "node-a", "Conditions:", "AgentReady", "InternalIP:", "192.168.1.4", "Capacity:", "1Gi", "Architecture:", "arm64", "Runtime Handlers:", "wasm", "Events:"} {
		if !strings.Contains(out, want) {
			t.Errorf("node describe lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Namespace:") {
		t.Errorf("cluster-scoped node described with a namespace:\n%s", out)
	}

	buf.Reset()
	cm := &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "settings", Namespace: "default"}, Data: map[string]string{"level": "2"}}
	if err := describeObject(&buf, cm, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "level:\n----\n2\n") {
		t.Errorf("configmap describe:\n%s", buf.String())
	}
}
