package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

func usageReport(node, cpu, mem string, pods ...client.PodMetrics) client.UsageReport {
	r := client.UsageReport{Node: client.NodeMetrics{Window: "15s", Usage: manifests.ResourceList{"cpu": manifests.Quantity(cpu), "memory": manifests.Quantity(mem)}}, Pods: pods}
	r.Node.Metadata.Name = node
	return r
}

func podUsage(ns, name, uid string, ctrs ...string) client.PodMetrics {
	p := client.PodMetrics{Window: "15s"}
	p.Metadata = manifests.ObjectMeta{Namespace: ns, Name: name, UID: uid}
	for i := 0; i+3 <= len(ctrs); i += 3 {
		u := manifests.ResourceList{"memory": manifests.Quantity(ctrs[i+2])}
		if ctrs[i+1] != "" {
			u["cpu"] = manifests.Quantity(ctrs[i+1])
		}
		p.Containers = append(p.Containers, client.ContainerMetrics{Name: ctrs[i], Usage: u})
	}
	return p
}

func uidOf(t *testing.T, e *authEnv, name string) string {
	t.Helper()
	obj, err := e.st.Get(ctxT(t), "pods", "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.GetObjectMeta().UID
}

// TestUsageAuthorization: a node reports its own usage and that of its
// pods; it may not report another node's, and the figures it sends for a
// pod bound elsewhere are never shown.
func TestUsageAuthorization(t *testing.T) {
	e := newAuthEnv(t)
	na, nb := azNode("a"), azNode("b")
	na.Labels = map[string]string{"zone": "x"}
	e.create(t, na, nb, azBoundPod("p-a", "a", nil), azBoundPod("p-b", "b", nil))
	ctx := ctxT(t)
	a := client.New(e.connect(t, "a", auth.RoleNode, "a"), client.AsNode("a"))
	b := client.New(e.connect(t, "b", auth.RoleNode, "b"), client.AsNode("b"))
	uidA, uidB := uidOf(t, e, "p-a"), uidOf(t, e, "p-b")

	// Before any report: nothing, but the nodes are counted.
	res, err := e.admin.Top(ctx, client.TopRequest{Resource: "nodes"})
	if err != nil || len(res.Nodes) != 0 || res.Selected != 2 {
		t.Fatalf("top before any report: %+v, %v", res, err)
	}

	// a reports itself, its pod, and a claim about b's pod.
	if err := a.ReportUsage(ctx, usageReport("a", "250m", "100Mi",
		podUsage("default", "p-a", uidA, "main", "50m", "10Mi"),
		podUsage("default", "p-b", uidB, "main", "999", "999Gi"))); err != nil {
		t.Fatalf("node a reports its usage: %v", err)
	}
	err = a.ReportUsage(ctx, usageReport("b", "1", "1Gi"))
	wantForbidden(t, "node a reports node b's usage", err, `node "a" may not usage nodes "b"`)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err = client.New(a.Conn(), client.AsNode("b")).ReportUsage(sctx, usageReport("b", "1", "1Gi"))
	wantForbidden(t, "node a posing as b", err, messaging.NodeAPISubject("b", messaging.VerbUsage))
	sctx2, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	_, err = client.New(a.Conn()).Top(sctx2, client.TopRequest{Resource: "pods"})
	wantForbidden(t, "node a reads top on the operators' subject", err)

	res, err = e.admin.Top(ctx, client.TopRequest{Resource: "nodes"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Nodes) != 1 || res.Nodes[0].Metadata.Name != "a" || res.Nodes[0].Usage["cpu"] != "250m" || res.Nodes[0].Usage["memory"] != "100Mi" ||
		res.Nodes[0].Kind != client.KindNodeMetrics || res.Nodes[0].Timestamp.IsZero() || res.Nodes[0].Metadata.Labels["zone"] != "x" {
		t.Fatalf("top nodes after a's report: %+v", res)
	}
	res, err = e.admin.Top(ctx, client.TopRequest{Resource: "pods", Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pods) != 1 || res.Pods[0].Metadata.Name != "p-a" || res.Pods[0].Containers[0].Usage["cpu"] != "50m" || res.Selected != 2 {
		t.Fatalf("top pods: b's pod must not show a's figures: %+v", res)
	}

	// b's own figures for its pod are the ones shown.
	if err := b.ReportUsage(ctx, usageReport("b", "1", "1Gi", podUsage("default", "p-b", uidB, "main", "20m", "5Mi"))); err != nil {
		t.Fatal(err)
	}
	res, err = e.admin.Top(ctx, client.TopRequest{Resource: "po", Name: "p-b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pods) != 1 || res.Pods[0].Containers[0].Usage["cpu"] != "20m" || res.Pods[0].Containers[0].Usage["memory"] != "5Mi" {
		t.Fatalf("top pod p-b: %+v", res)
	}

	// A readonly user may read top.
	ro := client.New(e.connect(t, "ro", auth.RoleReadonly, ""))
	res, err = ro.Top(ctx, client.TopRequest{Resource: "nodes", LabelSelector: "zone=x"})
	if err != nil || len(res.Nodes) != 1 || res.Nodes[0].Metadata.Name != "a" || res.Selected != 1 {
		t.Fatalf("readonly top nodes -l zone=x: %+v, %v", res, err)
	}
}

func TestUsageRequestChecks(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	n := &manifests.Node{}
	n.Name = "n1"
	manifests.Default(n)
	if _, err := e.st.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	node := client.New(e.nc, client.AsNode("n1"))
	tooMany := usageReport("n1", "1", "1")
	for i := range maxUsagePods + 1 {
		tooMany.Pods = append(tooMany.Pods, podUsage("default", fmt.Sprintf("p%d", i), ""))
	}
	for _, tc := range []struct {
		name string
		r    client.UsageReport
		want string
	}{
		{"bad quantity", usageReport("n1", "12 cores", "1Mi"), `node.usage.cpu: Invalid value: quantity "12 cores"`},
		{"negative", usageReport("n1", "-1", "1Mi"), `node.usage.cpu: Invalid value: "-1": must be non-negative`},
		{"unknown resource", func() client.UsageReport {
			r := usageReport("n1", "1", "1")
			r.Node.Usage["gpu"] = "1"
			return r
		}(), `node.usage: Unsupported value: "gpu"`},
		{"bad window", func() client.UsageReport { r := usageReport("n1", "1", "1"); r.Node.Window = "soon"; return r }(), `node.window: Invalid value: "soon"`},
		{"pod without namespace", usageReport("n1", "1", "1", podUsage("", "p", "u")), "pods[0].metadata: namespace, name and uid required"},
		{"pod without uid", usageReport("n1", "1", "1", podUsage("default", "p", "")), "pods[0].metadata: namespace, name and uid required"},
		{"bad pod name", usageReport("n1", "1", "1", podUsage("default", "Bad Name", "u")), "pods[0].metadata.name: Invalid value"},
		{"container without name", usageReport("n1", "1", "1", podUsage("default", "p", "u", "", "1m", "1Mi")), "pods[0].containers[0].name: Invalid value"},
		{"too many pods", tooMany, "pods: Too many: 1001, must have at most 1000"},
	} {
		err := node.ReportUsage(ctx, tc.r)
		if client.CodeOf(err) != client.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want Invalid naming %q", tc.name, err, tc.want)
		}
	}
	if res, err := e.c.Top(ctx, client.TopRequest{Resource: "nodes"}); err != nil || len(res.Nodes) != 0 {
		t.Fatalf("a refused report was stored: %+v, %v", res, err)
	}
	for _, tc := range []struct {
		req        client.TopRequest
		code, want string
	}{
		{client.TopRequest{Resource: "services"}, client.CodeInvalid, `resource: Unsupported value: "services": top reads nodes or pods`},
		{client.TopRequest{Resource: "widgets"}, client.CodeNotFound, "widgets"},
		{client.TopRequest{Resource: "pods", LabelSelector: "app in (x"}, client.CodeInvalid, "app in (x"},
		{client.TopRequest{Resource: "pods", Name: "missing"}, client.CodeNotFound, "missing"},
		{client.TopRequest{Resource: "pods", Namespace: "Bad_NS"}, client.CodeInvalid, "namespace"},
	} {
		_, err := e.c.Top(ctx, tc.req)
		if client.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("top %+v: %v, want %s naming %q", tc.req, err, tc.code, tc.want)
		}
	}
}

// TestTopPodsFollowTheirNode: a pod's figures come from the report of the
// node it is bound to, for the pod with that UID; a recreated pod of the
// same name has none until its node reports it.
func TestTopPodsFollowTheirNode(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	p := pod("web", "img")
	p.Namespace, p.Spec.NodeName = "default", "n1"
	manifests.Default(p)
	created, err := e.st.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	uid := created.GetObjectMeta().UID
	n1 := client.New(e.nc, client.AsNode("n1"))
	if err := n1.ReportUsage(ctx, usageReport("n1", "1", "1Gi", podUsage("default", "web", uid, "main", "", "3Mi"))); err != nil {
		t.Fatal(err)
	}
	res, err := e.c.Top(ctx, client.TopRequest{Resource: "pods", Namespace: "default", Name: "web"})
	if err != nil || len(res.Pods) != 1 || res.Pods[0].Containers[0].Usage["memory"] != "3Mi" {
		t.Fatalf("top pod web: %+v, %v", res, err)
	}
	if _, ok := res.Pods[0].Containers[0].Usage["cpu"]; ok {
		t.Fatalf("a container reported without cpu got one: %+v", res.Pods[0])
	}
	// Same name, new UID: the old figures are not the new pod's.
	if _, err := e.st.Delete(ctx, "pods", "default", "web", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	res, err = e.c.Top(ctx, client.TopRequest{Resource: "pods", Namespace: "default", Name: "web"})
	if err != nil || len(res.Pods) != 0 || res.Selected != 1 {
		t.Fatalf("top pod web after it was recreated: %+v, %v", res, err)
	}
}

// TestTopManyNodes reads the reports of more nodes than it gets one by one.
func TestTopManyNodes(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	const nodes = usageGetMax + 8
	for i := range nodes {
		n := &manifests.Node{}
		n.Name = fmt.Sprintf("n%02d", i)
		manifests.Default(n)
		if _, err := e.st.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			continue // half never report
		}
		if err := client.New(e.nc, client.AsNode(n.Name)).ReportUsage(ctx, usageReport(n.Name, fmt.Sprintf("%dm", i), "1Mi")); err != nil {
			t.Fatal(err)
		}
	}
	res, err := e.c.Top(ctx, client.TopRequest{Resource: "nodes"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Nodes) != nodes/2 || res.Selected != nodes {
		t.Fatalf("top nodes: %d with metrics of %d selected, want %d of %d", len(res.Nodes), res.Selected, nodes/2, nodes)
	}
	for i, m := range res.Nodes {
		if want := fmt.Sprintf("n%02d", 2*i); m.Metadata.Name != want || m.Usage["cpu"] != manifests.Quantity(fmt.Sprintf("%dm", 2*i)) {
			t.Fatalf("node %d: %s %v, want %s", i, m.Metadata.Name, m.Usage, want)
		}
	}
}
