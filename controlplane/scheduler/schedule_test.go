package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

type nodeOpt func(*manifests.Node)

func node(name string, opts ...nodeOpt) *manifests.Node {
	n := &manifests.Node{}
	n.Name = name
	n.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: manifests.ConditionTrue}}
	n.Status.RuntimeHandlers = []manifests.NodeRuntimeHandler{{Name: "wasm"}, {Name: "oci"}}
	n.Status.Allocatable = manifests.ResourceList{"cpu": "2", "memory": "1Gi", "pods": "10"}
	for _, o := range opts {
		o(n)
	}
	return n
}

func labels(kv ...string) nodeOpt {
	return func(n *manifests.Node) {
		n.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}

func notReady(n *manifests.Node) { n.Status.Conditions[0].Status = manifests.ConditionUnknown }
func cordoned(n *manifests.Node) { n.Spec.Unschedulable = true }
func wasmOnly(n *manifests.Node) {
	n.Status.RuntimeHandlers = []manifests.NodeRuntimeHandler{{Name: "wasm"}}
}
func alloc(cpu, mem, pods string) nodeOpt {
	return func(n *manifests.Node) {
		n.Status.Allocatable = manifests.ResourceList{"cpu": manifests.Quantity(cpu), "memory": manifests.Quantity(mem), "pods": manifests.Quantity(pods)}
	}
}
func taint(key, value, effect string) nodeOpt {
	return func(n *manifests.Node) {
		n.Spec.Taints = append(n.Spec.Taints, manifests.Taint{Key: key, Value: value, Effect: effect})
	}
}

type podOpt func(*manifests.Pod)

func pod(name string, opts ...podOpt) *manifests.Pod {
	p := &manifests.Pod{}
	p.Name, p.Namespace = name, "default"
	wasm := "wasm"
	p.Spec.RuntimeClassName = &wasm
	p.Spec.Containers = []manifests.Container{{Name: "c", Image: "m:v1"}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func oci(p *manifests.Pod) { p.Spec.RuntimeClassName = nil }
func selector(k, v string) podOpt {
	return func(p *manifests.Pod) { p.Spec.NodeSelector = map[string]string{k: v} }
}
func requests(cpu, mem string) podOpt {
	return func(p *manifests.Pod) {
		p.Spec.Containers[0].Resources.Requests = manifests.ResourceList{}
		if cpu != "" {
			p.Spec.Containers[0].Resources.Requests["cpu"] = manifests.Quantity(cpu)
		}
		if mem != "" {
			p.Spec.Containers[0].Resources.Requests["memory"] = manifests.Quantity(mem)
		}
	}
}
func memLimit(mem string) podOpt {
	return func(p *manifests.Pod) {
		p.Spec.Containers[0].Resources.Limits = manifests.ResourceList{"memory": manifests.Quantity(mem)}
	}
}
func required(exprs ...manifests.NodeSelectorRequirement) podOpt {
	return func(p *manifests.Pod) {
		p.Spec.Affinity = &manifests.Affinity{NodeAffinity: &manifests.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &manifests.NodeSelector{
				NodeSelectorTerms: []manifests.NodeSelectorTerm{{MatchExpressions: exprs}},
			},
		}}
	}
}
func preferred(weight int32, exprs ...manifests.NodeSelectorRequirement) podOpt {
	return func(p *manifests.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &manifests.Affinity{NodeAffinity: &manifests.NodeAffinity{}}
		}
		na := p.Spec.Affinity.NodeAffinity
		na.PreferredDuringSchedulingIgnoredDuringExecution = append(na.PreferredDuringSchedulingIgnoredDuringExecution,
			manifests.PreferredSchedulingTerm{Weight: weight, Preference: manifests.NodeSelectorTerm{MatchExpressions: exprs}})
	}
}
func expr(key, op string, values ...string) manifests.NodeSelectorRequirement {
	return manifests.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}
func tolerate(t manifests.Toleration) podOpt {
	return func(p *manifests.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, t) }
}
func podLabels(kv ...string) podOpt {
	return func(p *manifests.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}
func phase(ph string) podOpt { return func(p *manifests.Pod) { p.Status.Phase = ph } }

func TestSchedule(t *testing.T) {
	tests := []struct {
		name    string
		pod     *manifests.Pod
		nodes   []*manifests.Node
		running map[string][]*manifests.Pod
		want    string
		wantErr string
	}{
		{
			name:  "node selector picks the labelled node",
			pod:   pod("p", selector("site", "b")),
			nodes: []*manifests.Node{node("a", labels("site", "a")), node("b", labels("site", "b"))},
			want:  "b",
		},
		{
			name:  "ties broken by name",
			pod:   pod("p"),
			nodes: []*manifests.Node{node("c"), node("a"), node("b")},
			want:  "a",
		},
		{
			name:    "not ready and cordoned nodes are skipped",
			pod:     pod("p"),
			nodes:   []*manifests.Node{node("a", notReady), node("b", cordoned), node("c", notReady)},
			wantErr: "0/3 nodes are available: 2 node(s) were not ready, 1 node(s) were unschedulable.",
		},
		{
			name:  "cordoned node tolerated",
			pod:   pod("p", tolerate(manifests.Toleration{Key: TaintUnschedulable, Operator: "Exists", Effect: "NoSchedule"})),
			nodes: []*manifests.Node{node("a", cordoned)},
			want:  "a",
		},
		{
			name:    "oci pod needs the oci handler",
			pod:     pod("p", oci),
			nodes:   []*manifests.Node{node("a", wasmOnly)},
			wantErr: "0/1 nodes are available: 1 node(s) didn't have runtime handler oci.",
		},
		{
			name:    "brief example",
			pod:     pod("p", selector("site", "a"), requests("", "512Mi")),
			nodes:   []*manifests.Node{node("a1", labels("site", "a"), alloc("1", "256Mi", "10")), node("a2", labels("site", "a"), alloc("1", "256Mi", "10")), node("a3", labels("site", "a"), alloc("1", "100Mi", "10")), node("b1", labels("site", "b")), node("b2")},
			wantErr: "0/5 nodes are available: 3 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector.",
		},
		{
			name:  "memory limit counts as request",
			pod:   pod("p", memLimit("600Mi")),
			nodes: []*manifests.Node{node("a", alloc("1", "512Mi", "10")), node("b", alloc("1", "1Gi", "10"))},
			want:  "b",
		},
		{
			name:  "requests of running pods are subtracted, ended pods are not",
			pod:   pod("p", requests("500m", "")),
			nodes: []*manifests.Node{node("a", alloc("1", "1Gi", "10")), node("b", alloc("1", "1Gi", "10"))},
			running: map[string][]*manifests.Pod{
				"a": {pod("x", requests("700m", ""))},
				"b": {pod("y", requests("900m", ""), phase(manifests.PodSucceeded))},
			},
			want: "b",
		},
		{
			name:    "insufficient cpu and too many pods",
			pod:     pod("p", requests("1500m", "")),
			nodes:   []*manifests.Node{node("a", alloc("1", "1Gi", "1"))},
			running: map[string][]*manifests.Pod{"a": {pod("x")}},
			wantErr: "0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods.",
		},
		{
			name:  "least requested prefers the emptier node",
			pod:   pod("p", requests("100m", "")),
			nodes: []*manifests.Node{node("a"), node("b")},
			running: map[string][]*manifests.Pod{
				"a": {pod("x", requests("1", "512Mi"), podLabels("app", "x"))},
				"b": {pod("y", requests("100m", "10Mi"), podLabels("app", "y"))},
			},
			want: "b",
		},
		{
			name:    "required affinity In / NotIn",
			pod:     pod("p", required(expr("zone", "In", "z1", "z2"), expr("tier", "NotIn", "db"))),
			nodes:   []*manifests.Node{node("a", labels("zone", "z1", "tier", "db")), node("b", labels("zone", "z3")), node("c", labels("zone", "z2"))},
			want:    "c",
			wantErr: "",
		},
		{
			name:  "required affinity Exists / DoesNotExist / Gt / Lt",
			pod:   pod("p", required(expr("gpu", "Exists"), expr("legacy", "DoesNotExist"), expr("cores", "Gt", "2"), expr("cores", "Lt", "8"))),
			nodes: []*manifests.Node{node("a", labels("gpu", "1", "cores", "2")), node("b", labels("gpu", "1", "cores", "4", "legacy", "y")), node("c", labels("gpu", "1", "cores", "4")), node("d", labels("cores", "4"))},
			want:  "c",
		},
		{
			name:    "required affinity matches nothing",
			pod:     pod("p", required(expr("cores", "Gt", "x"))),
			nodes:   []*manifests.Node{node("a", labels("cores", "4"))},
			wantErr: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
		},
		{
			name:  "preferred affinity wins over name order",
			pod:   pod("p", preferred(10, expr("fast", "In", "yes"))),
			nodes: []*manifests.Node{node("a"), node("b", labels("fast", "yes"))},
			want:  "b",
		},
		{
			name:    "untolerated NoSchedule taint",
			pod:     pod("p"),
			nodes:   []*manifests.Node{node("a", taint("dedicated", "ml", "NoSchedule")), node("b", taint("x", "", "NoExecute"))},
			wantErr: "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: ml}, 1 node(s) had untolerated taint {x: }.",
		},
		{
			name:  "PreferNoSchedule does not filter; tolerations by Equal and Exists",
			pod:   pod("p", tolerate(manifests.Toleration{Key: "dedicated", Value: "ml", Effect: "NoSchedule"}), tolerate(manifests.Toleration{Key: "x", Operator: "Exists"})),
			nodes: []*manifests.Node{node("a", taint("dedicated", "ml", "NoSchedule"), taint("x", "1", "NoExecute")), node("b", taint("soft", "", "PreferNoSchedule"))},
			want:  "a",
		},
		{
			name:    "toleration with the wrong value",
			pod:     pod("p", tolerate(manifests.Toleration{Key: "dedicated", Value: "web", Effect: "NoSchedule"})),
			nodes:   []*manifests.Node{node("a", taint("dedicated", "ml", "NoSchedule"))},
			wantErr: "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: ml}.",
		},
		{
			name:  "spread: fewest pods with the same labels",
			pod:   pod("p", podLabels("app", "web")),
			nodes: []*manifests.Node{node("a"), node("b")},
			running: map[string][]*manifests.Pod{
				"a": {pod("w1", podLabels("app", "web"))},
				"b": {pod("o1", podLabels("app", "other"))},
			},
			want: "b",
		},
		{
			name:    "no nodes",
			pod:     pod("p"),
			wantErr: "0/0 nodes are available.",
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

// TestSimilarPodsCountedByLabelGroups checks the per-node label groups
// against a count over every pod, through adds and removes.
func TestSimilarPodsCountedByLabelGroups(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ni := &nodeInfo{}
	ni.setNode(node("n1", alloc("4", "4Gi", "110")))
	live := map[string]bool{}
	randomPod := func(i int) *manifests.Pod {
		kv := []string{"app", fmt.Sprint(rng.IntN(3))}
		if rng.IntN(2) == 0 {
			kv = append(kv, "tier", fmt.Sprint(rng.IntN(2)))
		}
		p := pod(fmt.Sprintf("p-%d", i), podLabels(kv...))
		p.Namespace = []string{"default", "other"}[rng.IntN(2)]
		return p
	}
	for i := range 400 {
		if len(live) > 0 && rng.IntN(3) == 0 {
			for _, p := range ni.pods { // remove one at random
				if rng.IntN(2) == 0 {
					if !ni.remove(p.Namespace, p.Name) {
						t.Fatalf("remove %s/%s: not found", p.Namespace, p.Name)
					}
					delete(live, p.Namespace+"/"+p.Name)
					break
				}
			}
		} else {
			p := randomPod(i)
			ni.add(p)
			live[p.Namespace+"/"+p.Name] = true
		}
		probe := randomPod(-1)
		want := 0
		for _, p := range ni.pods {
			if p.Namespace == probe.Namespace && hasLabels(p.Labels, probe.Labels) {
				want++
			}
		}
		if got := countSimilar(probe, ni); got != want {
			t.Fatalf("step %d: %d pods like %s %v counted, want %d", i, got, probe.Namespace, probe.Labels, want)
		}
	}
	total := 0
	for _, g := range ni.groups {
		total += g.n
	}
	if total != len(ni.pods) || len(ni.pods) != len(live) {
		t.Fatalf("groups hold %d pods, node %d, live %d", total, len(ni.pods), len(live))
	}
}

// TestNodeSelectorMemoFollowsNodeChanges checks the node selector memo
// against node label changes and other selectors.
func TestNodeSelectorMemoFollowsNodeChanges(t *testing.T) {
	ni := &nodeInfo{}
	ni.setNode(node("n1", labels("site", "a"), alloc("4", "4Gi", "110")))
	siteA, siteB := pod("a", selector("site", "a")), pod("b", selector("site", "b"))
	ka, kb := selectorKey(siteA), selectorKey(siteB)
	if ka == "" || ka == kb {
		t.Fatalf("selector keys %q and %q", ka, kb)
	}
	for range 2 { // the second round answers from the memo
		if !ni.matchesSelector(siteA, ka) || ni.matchesSelector(siteB, kb) {
			t.Fatal("site=a node: want site=a to match and site=b not")
		}
	}
	ni.setNode(node("n1", labels("site", "b"), alloc("4", "4Gi", "110")))
	if ni.matchesSelector(siteA, ka) || !ni.matchesSelector(siteB, kb) {
		t.Fatal("relabelled site=b: the memo kept the old labels' answer")
	}
}
