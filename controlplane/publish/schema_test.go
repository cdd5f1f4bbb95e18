package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/nodes"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaFiles maps each message's "schema" field to its schema file.
var schemaFiles = map[string]string{
	SchemaEvent:      "event.v1.json",
	SchemaPodStatus:  "pod-status.v1.json",
	SchemaNodeStatus: "node-status.v1.json",
}

// compileSchemas compiles docs/schemas/*.v1.json with a JSON Schema
// (2020-12) validator that also asserts formats (date-time, ipv4, ...),
// by message schema name.
func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	out := map[string]*jsonschema.Schema{}
	for name, file := range schemaFiles {
		raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "schemas", file))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id == "" || !strings.HasSuffix(id, "/"+file) {
			t.Fatalf("%s: $id %q does not name the file", file, id)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		s, err := c.Compile(id)
		if err != nil {
			t.Fatalf("compile %s: %v", file, err)
		}
		// The schema names its message type.
		if s.Properties["schema"] == nil || s.Properties["schema"].Const == nil || *s.Properties["schema"].Const != any(name) {
			t.Fatalf("%s: properties.schema is not const %q", file, name)
		}
		out[name] = s
	}
	return out
}

// validate validates a message (a Go value, or its JSON) against the
// schema its "schema" field names.
func validate(schemas map[string]*jsonschema.Schema, msg any) error {
	data, ok := msg.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(msg); err != nil {
			return err
		}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s: %w", data, err)
	}
	m, _ := inst.(map[string]any)
	name, _ := m["schema"].(string)
	s, ok := schemas[name]
	if !ok {
		return fmt.Errorf("%s: no schema named %q", data, name)
	}
	if err := s.Validate(inst); err != nil {
		return fmt.Errorf("%s: %w", data, err)
	}
	return nil
}

// sampleMessages builds every message type the publisher sends, in each
// of its shapes, the way the publisher builds them.
func sampleMessages() map[string]any {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ev := &manifests.Event{Reason: "BackOff", Message: "m", Count: 2, Type: manifests.EventWarning, FirstTimestamp: now, LastTimestamp: now,
		InvolvedObject: manifests.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "p", UID: "u", FieldPath: "spec.containers{a}"},
		Source:         manifests.EventSource{Component: "c", Host: "h"}}
	ev.Namespace, ev.Name, ev.UID, ev.ResourceVersion = "ns", "p.1", "u2", "7"
	nodeEv := &manifests.Event{Reason: "NodeNotReady", Type: manifests.EventNormal, Count: 1,
		InvolvedObject: manifests.ObjectReference{Kind: "Node", Name: "edge-7"}}
	nodeEv.Namespace, nodeEv.Name = "default", "edge-7.1"

	pod := &manifests.Pod{}
	pod.Namespace, pod.Name, pod.UID, pod.ResourceVersion = "ns", "p", "u", "8"
	pod.Spec.NodeName = "n"
	pod.Status = manifests.PodStatus{Phase: "Failed", Reason: "r", Message: "m", PodIP: "10.0.0.1",
		Conditions:            []manifests.PodCondition{{Type: "Ready", Status: "False", Reason: "x"}},
		InitContainerStatuses: []manifests.ContainerStatus{{Name: "i", Image: "img", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}},
		ContainerStatuses: []manifests.ContainerStatus{
			{Name: "a", Image: "img", Ready: true, RestartCount: 3, State: manifests.ContainerState{Running: &manifests.ContainerStateRunning{}}},
			{Name: "b", Image: "img", State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
			{Name: "c", Image: "img"},
		},
	}
	deleted := podSummary(pod)
	deleted.Deleted = true
	pending := &manifests.Pod{}
	pending.Namespace, pending.Name = "ns", "q"
	v6 := manifests.DeepCopy(pod).(*manifests.Pod)
	v6.Status.PodIP = "fd00::5"

	node := &manifests.Node{}
	node.Name, node.UID, node.ResourceVersion = "n", "u", "9"
	node.Status.Conditions = []manifests.NodeCondition{{Type: "Ready", Status: "True", Reason: "r", Message: "m", LastHeartbeatTime: now}}
	unreachable := manifests.DeepCopy(node).(*manifests.Node)
	unreachable.Spec.Taints = []manifests.Taint{{Key: nodes.TaintUnreachable, Effect: "NoExecute"}}
	fresh := &manifests.Node{}
	fresh.Name = "m"
	gone := nodeMessage(node, now)
	gone.State = NodeDeleted

	podMsg := func(p *manifests.Pod, s PodSummary) PodStatus {
		return PodStatus{Schema: SchemaPodStatus, Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion, Time: now, PodSummary: s}
	}
	return map[string]any{
		"event":            eventMessage(ev),
		"event/node":       eventMessage(nodeEv),
		"pod":              podMsg(pod, podSummary(pod)),
		"pod/deleted":      podMsg(pod, deleted),
		"pod/pending":      podMsg(pending, podSummary(pending)),
		"pod/ipv6":         podMsg(v6, podSummary(v6)),
		"node":             nodeMessage(node, now),
		"node/unreachable": nodeMessage(unreachable, now),
		"node/new":         nodeMessage(fresh, now),
		"node/deleted":     gone,
	}
}

// TestMessagesMatchSchemas validates every message type, in each of its
// shapes, against its docs/schemas file with a JSON Schema validator.
func TestMessagesMatchSchemas(t *testing.T) {
	schemas := compileSchemas(t)
	seen := map[string]bool{}
	for name, msg := range sampleMessages() {
		if err := validate(schemas, msg); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		data, _ := json.Marshal(msg)
		var m struct{ Schema string }
		_ = json.Unmarshal(data, &m)
		seen[m.Schema] = true
	}
	for name := range schemaFiles {
		if !seen[name] {
			t.Errorf("no sample of %s", name)
		}
	}
}

// TestSchemasRejectBrokenMessages breaks valid messages one way at a time
// (a wrong type, a missing or unknown field, a value outside an enum, a
// bad time or address): the validator must reject each, naming where.
func TestSchemasRejectBrokenMessages(t *testing.T) {
	schemas := compileSchemas(t)
	samples := sampleMessages()
	for _, tc := range []struct {
		sample, name string
		edit         func(m map[string]any)
		want         string // in the error
	}{
		{"event", "count is a string", func(m map[string]any) { m["count"] = "2" }, "/count"},
		{"event", "count is 0", func(m map[string]any) { m["count"] = 0 }, "/count"},
		{"event", "no involvedObject", func(m map[string]any) { delete(m, "involvedObject") }, "involvedObject"},
		{"event", "involvedObject without kind", func(m map[string]any) { delete(obj(m, "involvedObject"), "kind") }, "kind"},
		{"event", "involvedObject with an unknown field", func(m map[string]any) { obj(m, "involvedObject")["apiVersion"] = "v1" }, "apiVersion"},
		{"event", "type outside the enum", func(m map[string]any) { m["type"] = "Error" }, "/type"},
		{"event", "bad timestamp", func(m map[string]any) { m["lastTimestamp"] = "yesterday" }, "/lastTimestamp"},
		{"event", "wrong schema name", func(m map[string]any) { m["schema"] = "edge.events.v2" }, "no schema named"},
		{"pod", "no phase", func(m map[string]any) { delete(m, "phase") }, "phase"},
		{"pod", "phase outside the enum", func(m map[string]any) { m["phase"] = "Crashing" }, "/phase"},
		{"pod", "empty name", func(m map[string]any) { m["name"] = "" }, "/name"},
		{"pod", "resourceVersion is a number", func(m map[string]any) { m["resourceVersion"] = 8 }, "/resourceVersion"},
		{"pod", "resourceVersion not decimal", func(m map[string]any) { m["resourceVersion"] = "v8" }, "/resourceVersion"},
		{"pod", "podIP not an address", func(m map[string]any) { m["podIP"] = "10.0.0.300" }, "/podIP"},
		{"pod", "deleted is a string", func(m map[string]any) { m["deleted"] = "true" }, "/deleted"},
		{"pod", "unknown field", func(m map[string]any) { m["restarts"] = 1 }, "restarts"},
		{"pod", "container ready is a string", func(m map[string]any) { item(m, "containers", 1)["ready"] = "yes" }, "/containers/1/ready"},
		{"pod", "container without restartCount", func(m map[string]any) { delete(item(m, "containers", 1), "restartCount") }, "restartCount"},
		{"pod", "negative restartCount", func(m map[string]any) { item(m, "containers", 1)["restartCount"] = -1 }, "/containers/1/restartCount"},
		{"pod", "container state outside the enum", func(m map[string]any) { item(m, "containers", 1)["state"] = "crashed" }, "/containers/1/state"},
		{"pod", "terminated without exitCode", func(m map[string]any) { delete(item(m, "containers", 0), "exitCode") }, "exitCode"},
		{"pod", "running with an exitCode", func(m map[string]any) { item(m, "containers", 1)["exitCode"] = 0 }, "/containers/1"},
		{"pod", "condition status outside the enum", func(m map[string]any) { item(m, "conditions", 0)["status"] = "Yes" }, "/conditions/0/status"},
		{"pod", "conditions not an array", func(m map[string]any) { m["conditions"] = map[string]any{} }, "/conditions"},
		{"node", "no state", func(m map[string]any) { delete(m, "state") }, "state"},
		{"node", "state outside the enum", func(m map[string]any) { m["state"] = "Up" }, "/state"},
		{"node", "no time", func(m map[string]any) { delete(m, "time") }, "time"},
		{"node", "time not RFC 3339", func(m map[string]any) { m["time"] = "2026-11-23 12:00:00" }, "/time"},
		{"node", "unknown field", func(m map[string]any) { m["labels"] = map[string]any{} }, "labels"},
	} {
		t.Run(tc.sample+"/"+tc.name, func(t *testing.T) {
			data, err := json.Marshal(samples[tc.sample])
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			if err := validate(schemas, m); err != nil {
				t.Fatalf("the intact sample fails: %v", err)
			}
			tc.edit(m)
			err = validate(schemas, m)
			if err == nil {
				t.Fatalf("a broken message passed: %v", m)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func item(m map[string]any, key string, i int) map[string]any {
	return m[key].([]any)[i].(map[string]any)
}

// TestPublishedMessagesMatchSchemas runs the publisher over a real store
// and validates what a plain subscriber receives: pod, node and event
// messages, creations, changes and deletions.
func TestPublishedMessagesMatchSchemas(t *testing.T) {
	schemas := compileSchemas(t)
	env := natstest.Start(t, "publish-schema-test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := store.New(env.Buckets.Objects)
	msgs := make(chan *nats.Msg, 64)
	sub, err := env.Conn.ChanSubscribe("edge.*.v1.>", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	synced := make(chan struct{}, 1)
	stop, err := Start(ctx, st, env.Conn, Options{OnSynced: func() { synced <- struct{}{} }}, messaging.BucketOptions{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case <-synced:
	case <-ctx.Done():
		t.Fatal("publisher never synced")
	}

	pod := &manifests.Pod{}
	pod.Namespace, pod.Name = "apps", "web"
	pod.Spec.NodeName = "edge-1"
	o, err := st.Create(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	p := o.(*manifests.Pod)
	p.Status.Phase = manifests.PodRunning
	p.Status.PodIP = "10.244.1.5"
	p.Status.Conditions = []manifests.PodCondition{{Type: "Ready", Status: manifests.ConditionTrue}}
	p.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "app", Ready: true, Image: "web:1",
		State: manifests.ContainerState{Running: &manifests.ContainerStateRunning{}}}}
	if o, err = st.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := events.NewRecorder(st, events.Options{Component: "test"}).Eventf(ctx, o, manifests.EventWarning, "BackOff", "restarting %s", "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, "pods", "apps", "web", 0); err != nil {
		t.Fatal(err)
	}
	node := &manifests.Node{}
	node.Name = "edge-1"
	node.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: manifests.ConditionTrue, LastHeartbeatTime: time.Now()}}
	if _, err := st.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, "nodes", "", "edge-1", 0); err != nil {
		t.Fatal(err)
	}

	want := map[string]int{"pod": 3, "event": 1, "node": 2}
	got := map[string]int{}
	for got["pod"] < want["pod"] || got["event"] < want["event"] || got["node"] < want["node"] {
		select {
		case m := <-msgs:
			if err := validate(schemas, m.Data); err != nil {
				t.Errorf("%s: %v", m.Subject, err)
			}
			switch {
			case strings.HasPrefix(m.Subject, "edge.status.v1.pod."):
				got["pod"]++
			case strings.HasPrefix(m.Subject, "edge.status.v1.node."):
				got["node"]++
			case strings.HasPrefix(m.Subject, "edge.events.v1."):
				got["event"]++
			default:
				t.Errorf("message on %s", m.Subject)
			}
		case <-ctx.Done():
			t.Fatalf("messages received %v, want %v", got, want)
		}
	}
}
