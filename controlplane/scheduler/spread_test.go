package scheduler

import (
	"fmt"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

func ownedBy(uid string) podOpt {
	return func(p *manifests.Pod) {
		t := true
		p.OwnerReferences = []manifests.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs-" + uid, UID: uid, Controller: &t}}
	}
}

func spreadOn(key string, maxSkew int32, when string, app string) podOpt {
	return func(p *manifests.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, manifests.TopologySpreadConstraint{
			MaxSkew: maxSkew, TopologyKey: key, WhenUnsatisfiable: when,
			LabelSelector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": app}},
		})
	}
}

func minDomains(n int32) podOpt {
	return func(p *manifests.Pod) {
		c := &p.Spec.TopologySpreadConstraints[len(p.Spec.TopologySpreadConstraints)-1]
		c.MinDomains = &n
	}
}

func web(name string) *manifests.Pod { return pod(name, podLabels("app", "web")) }

func secs(n int64) *int64 { return &n }

func TestScheduleTaintsAffinitySpread(t *testing.T) {
	sites := []*manifests.Node{node("a1", labels("site", "a")), node("a2", labels("site", "a")), node("b1", labels("site", "b"))}
	tests := []struct {
		name    string
		pod     *manifests.Pod
		nodes   []*manifests.Node
		running map[string][]*manifests.Pod
		want    string
		wantErr string
	}{
		{
			name:  "PreferNoSchedule taint scores lower",
			pod:   pod("p"),
			nodes: []*manifests.Node{node("a", taint("soft", "", "PreferNoSchedule")), node("b")},
			want:  "b",
		},
		{
			name:  "PreferNoSchedule taint tolerated",
			pod:   pod("p", tolerate(manifests.Toleration{Key: "soft", Operator: "Exists", Effect: "PreferNoSchedule"})),
			nodes: []*manifests.Node{node("a", taint("soft", "", "PreferNoSchedule")), node("b")},
			want:  "a",
		},
		{
			name:  "fewer PreferNoSchedule taints win",
			pod:   pod("p"),
			nodes: []*manifests.Node{node("a", taint("s1", "", "PreferNoSchedule"), taint("s2", "", "PreferNoSchedule")), node("b", taint("s1", "", "PreferNoSchedule"))},
			want:  "b",
		},
		{
			name:  "preferred affinity weights: heavier term wins",
			pod:   pod("p", preferred(10, expr("ssd", "Exists")), preferred(50, expr("zone", "In", "z2"))),
			nodes: []*manifests.Node{node("a", labels("ssd", "1")), node("b", labels("zone", "z2")), node("c")},
			want:  "b",
		},
		{
			name:  "preferred affinity weights add up",
			pod:   pod("p", preferred(10, expr("ssd", "Exists")), preferred(50, expr("zone", "In", "z2"))),
			nodes: []*manifests.Node{node("a", labels("ssd", "1")), node("b", labels("zone", "z2")), node("c", labels("zone", "z2", "ssd", "1"))},
			want:  "c",
		},
		{
			name:    "unreachable node: untolerated taint",
			pod:     pod("p"),
			nodes:   []*manifests.Node{node("a", notReady, taint("node.edge.io/unreachable", "", "NoSchedule"), taint("node.edge.io/unreachable", "", "NoExecute")), node("b", notReady, taint("node.kubernetes.io/not-ready", "", "NoSchedule"))},
			wantErr: "0/2 nodes are available: 1 node(s) had untolerated taint {node.edge.io/unreachable: }, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.",
		},
		{
			name:  "NoExecute tolerated for a while still schedules",
			pod:   pod("p", tolerate(manifests.Toleration{Key: "maint", Operator: "Equal", Value: "soon", Effect: "NoExecute", TolerationSeconds: secs(30)})),
			nodes: []*manifests.Node{node("a", taint("maint", "soon", "NoExecute"))},
			want:  "a",
		},
		{
			name:  "operator Exists without key tolerates every taint",
			pod:   pod("p", tolerate(manifests.Toleration{Operator: "Exists"})),
			nodes: []*manifests.Node{node("a", taint("x", "1", "NoSchedule"), taint("y", "", "NoExecute"))},
			want:  "a",
		},
		{
			name:    "toleration of another effect does not help",
			pod:     pod("p", tolerate(manifests.Toleration{Key: "x", Operator: "Exists", Effect: "NoExecute"})),
			nodes:   []*manifests.Node{node("a", taint("x", "", "NoSchedule"))},
			wantErr: "0/1 nodes are available: 1 node(s) had untolerated taint {x: }.",
		},
		{
			name:  "DoNotSchedule: the site with fewer pods",
			pod:   pod("p", podLabels("app", "web"), spreadOn("site", 1, manifests.DoNotSchedule, "web")),
			nodes: sites,
			running: map[string][]*manifests.Pod{
				"a1": {web("w1")}, "a2": {web("w2")}, "b1": {web("w3"), pod("other")},
			},
			want: "b1",
		},
		{
			name:  "DoNotSchedule: skew within maxSkew allows the emptier node",
			pod:   pod("p", podLabels("app", "web"), spreadOn("site", 2, manifests.DoNotSchedule, "web")),
			nodes: []*manifests.Node{node("a1", labels("site", "a"), taint("busy", "", "NoSchedule")), node("b1", labels("site", "b"))},
			running: map[string][]*manifests.Pod{
				"a1": {web("w1")}, "b1": {web("w3"), web("w4")},
			},
			want: "b1", // skew 3-1 = 2
		},
		{
			name:  "DoNotSchedule: unsatisfiable and missing label",
			pod:   pod("p", podLabels("app", "web"), spreadOn("site", 1, manifests.DoNotSchedule, "web")),
			nodes: []*manifests.Node{node("a1", labels("site", "a")), node("a2", labels("site", "a")), node("b1", labels("site", "b"), alloc("1", "1Gi", "2")), node("x")},
			running: map[string][]*manifests.Pod{
				"a1": {web("w1"), web("w3")}, "b1": {web("w2"), pod("o")},
			},
			wantErr: "0/4 nodes are available: 2 node(s) didn't match pod topology spread constraints, 1 Too many pods, 1 node(s) didn't match pod topology spread constraints (missing required label).",
		},
		{
			name:    "DoNotSchedule: minDomains counts missing domains as empty",
			pod:     pod("p", podLabels("app", "web"), spreadOn("site", 1, manifests.DoNotSchedule, "web"), minDomains(3)),
			nodes:   []*manifests.Node{node("a1", labels("site", "a")), node("b1", labels("site", "b"))},
			running: map[string][]*manifests.Pod{"a1": {web("w1")}, "b1": {web("w2")}},
			wantErr: "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints.",
		},
		{
			name:  "DoNotSchedule: domains only over nodes the selector allows",
			pod:   pod("p", podLabels("app", "web"), selector("tier", "edge"), spreadOn("site", 1, manifests.DoNotSchedule, "web")),
			nodes: []*manifests.Node{node("a1", labels("site", "a", "tier", "edge")), node("b1", labels("site", "b"))},
			running: map[string][]*manifests.Pod{
				"a1": {web("w1"), web("w2")},
			},
			want: "a1", // site b is not a domain for this pod: no skew
		},
		{
			name:  "ScheduleAnyway: prefers the site with fewer pods over an emptier node",
			pod:   pod("p", podLabels("app", "web"), requests("100m", ""), spreadOn("site", 1, manifests.ScheduleAnyway, "web")),
			nodes: sites,
			running: map[string][]*manifests.Pod{
				"a1": {web("w1")}, "a2": {web("w3")}, "b1": {web("w2"), pod("big", requests("1500m", "512Mi"))},
			},
			want: "b1",
		},
		{
			name:  "ScheduleAnyway never filters",
			pod:   pod("p", podLabels("app", "web"), spreadOn("site", 1, manifests.ScheduleAnyway, "web")),
			nodes: []*manifests.Node{node("a1", labels("site", "a"))},
			running: map[string][]*manifests.Pod{
				"a1": {web("w1"), web("w2"), web("w3")},
			},
			want: "a1",
		},
		{
			name:  "default spreading by owner across nodes",
			pod:   pod("p", ownedBy("rs1")),
			nodes: []*manifests.Node{node("a"), node("b")},
			running: map[string][]*manifests.Pod{
				"a": {pod("r1", ownedBy("rs1")), pod("r2", ownedBy("rs1"))},
				"b": {pod("r3", ownedBy("rs1")), pod("x1", ownedBy("other")), pod("x2", ownedBy("other"))},
			},
			want: "b",
		},
		{
			name:  "default spreading by owner across zones",
			pod:   pod("p", ownedBy("rs1")),
			nodes: []*manifests.Node{node("a1", labels(LabelZone, "z1")), node("a2", labels(LabelZone, "z1")), node("b1", labels(LabelZone, "z2"))},
			running: map[string][]*manifests.Pod{
				"a1": {pod("r1", ownedBy("rs1"))},
			},
			want: "b1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fe := Schedule(tt.pod, tt.nodes, tt.running)
			if tt.wantErr != "" {
				if fe == nil {
					t.Fatalf("Schedule = %q, want error %q", got, tt.wantErr)
				}
				if fe.Error() != tt.wantErr {
					t.Fatalf("error:\n got %q\nwant %q", fe.Error(), tt.wantErr)
				}
				return
			}
			if fe != nil {
				t.Fatalf("unexpected error: %v", fe)
			}
			if got != tt.want {
				t.Fatalf("Schedule = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSpreadReplicasEvenly places the replicas of one owner one after the
// other, as the controller does, and checks they end up even across
// nodes and sites.
func TestSpreadReplicasEvenly(t *testing.T) {
	var nodes []*manifests.Node
	for i := range 6 {
		nodes = append(nodes, node(fmt.Sprintf("n%d", i), labels(LabelZone, fmt.Sprintf("z%d", i%3))))
	}
	placed := map[string][]*manifests.Pod{}
	for i := range 12 {
		p := pod(fmt.Sprintf("r%d", i), ownedBy("rs1"), requests("10m", "1Mi"))
		n, fe := Schedule(p, nodes, placed)
		if fe != nil {
			t.Fatal(fe)
		}
		placed[n] = append(placed[n], p)
	}
	for _, n := range nodes {
		if got := len(placed[n.Name]); got != 2 {
			t.Fatalf("node %s got %d replicas, want 2 each: %v", n.Name, got, counts(placed))
		}
	}
}

func counts(m map[string][]*manifests.Pod) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}
