package publish

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// schema is the part of a docs/schemas file this test checks.
type schema struct {
	Required   []string                   `json:"required"`
	Properties map[string]json.RawMessage `json:"properties"`
}

// TestMessagesMatchSchemas checks that every field a message carries is
// documented in its schema, and that the required ones are always there.
func TestMessagesMatchSchemas(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ev := &manifests.Event{Reason: "BackOff", Message: "m", Count: 2, Type: manifests.EventWarning, FirstTimestamp: now, LastTimestamp: now,
		InvolvedObject: manifests.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "p", UID: "u", FieldPath: "spec.containers{a}"},
		Source:         manifests.EventSource{Component: "c", Host: "h"}}
	ev.Namespace, ev.Name, ev.UID, ev.ResourceVersion = "ns", "p.1", "u2", "7"
	pod := &manifests.Pod{}
	pod.Namespace, pod.Name, pod.UID, pod.ResourceVersion = "ns", "p", "u", "8"
	pod.Spec.NodeName = "n"
	pod.Status = manifests.PodStatus{Phase: "Failed", Reason: "r", Message: "m", PodIP: "10.0.0.1",
		Conditions:            []manifests.PodCondition{{Type: "Ready", Status: "False", Reason: "x"}},
		InitContainerStatuses: []manifests.ContainerStatus{{Name: "i", Image: "img", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}},
	}
	ps := podSummary(pod)
	ps.Deleted = true
	node := &manifests.Node{}
	node.Name, node.UID, node.ResourceVersion = "n", "u", "9"
	node.Status.Conditions = []manifests.NodeCondition{{Type: "Ready", Status: "True", Reason: "r", Message: "m", LastHeartbeatTime: now}}

	for file, msg := range map[string]any{
		"event.v1.json":       eventMessage(ev),
		"pod-status.v1.json":  PodStatus{Schema: SchemaPodStatus, Namespace: "ns", Name: "p", UID: "u", ResourceVersion: "8", Time: now, PodSummary: ps},
		"node-status.v1.json": nodeMessage(node, now),
	} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "schemas", file))
		if err != nil {
			t.Fatal(err)
		}
		var s schema
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		data, _ := json.Marshal(msg)
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(data, &fields); err != nil {
			t.Fatal(err)
		}
		for k := range fields {
			if _, ok := s.Properties[k]; !ok {
				t.Errorf("%s: message field %q is not in the schema", file, k)
			}
		}
		for _, k := range s.Required {
			if _, ok := fields[k]; !ok {
				t.Errorf("%s: required field %q missing from %s", file, k, data)
			}
		}
		var sch struct {
			Properties struct {
				Schema struct {
					Const string `json:"const"`
				} `json:"schema"`
			} `json:"properties"`
		}
		_ = json.Unmarshal(raw, &sch)
		if got := string(fields["schema"]); got != `"`+sch.Properties.Schema.Const+`"` {
			t.Errorf("%s: schema field %s, schema says %q", file, got, sch.Properties.Schema.Const)
		}
	}
}
