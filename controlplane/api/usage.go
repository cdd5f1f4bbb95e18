package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// Resource usage (docs/top.md). An agent reports its node and the pods
// running on it in one request (VerbUsage, node-scoped), stored as one put
// under messaging.UsageKey. The pods of a report are not checked against
// the store on the write path (that would be a read per pod per report);
// instead top takes a pod's usage only from the report of the node the pod
// is bound to, with the pod's UID: a node that reports another node's pod
// is ignored, and a pod deleted or moved stops showing at once.

// Bounds of a usage report, checked before it is stored.
const (
	maxUsagePods       = 1000
	maxUsageContainers = 64
	maxUsageWindow     = time.Hour
)

// usageGetMax is the number of nodes top reads with one get each; past it
// one watch reads every report at once.
const usageGetMax = 32

// usageBucket opens messaging.BucketUsage on first use (OpenBuckets has
// created it before the server starts).
type usageBucket struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (s *Server) usageKV(ctx context.Context) (jetstream.KeyValue, error) {
	s.usage.mu.Lock()
	defer s.usage.mu.Unlock()
	if s.usage.kv != nil {
		return s.usage.kv, nil
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, client.Errorf(client.CodeUnavailable, "usage: jetstream: %v", err)
	}
	kv, err := js.KeyValue(ctx, messaging.BucketUsage)
	if err != nil {
		return nil, client.Errorf(client.CodeUnavailable, "usage: open bucket %s: %v", messaging.BucketUsage, err)
	}
	s.usage.kv = kv
	return kv, nil
}

// authorizeUsage lets node report only its own usage.
func authorizeUsage(node string, body []byte) error {
	var r client.UsageReport
	if err := decodeBounded(body, &r); err != nil {
		return err
	}
	if r.Node.Metadata.Name != node {
		return forbidden(node, messaging.VerbUsage, "nodes", "", r.Node.Metadata.Name, "it is another node")
	}
	return nil
}

// reportUsage stores the usage report of the node the request came from
// (authorized by authorizeNode), stamped with the control plane's clock:
// devices may have no RTC.
func (s *Server) reportUsage(ctx context.Context, body []byte) (any, error) {
	node, _, ok := messaging.ParseNodeAPISubject(subjectOf(ctx))
	if !ok {
		return nil, client.Errorf(client.CodeForbidden, "usage: not a node API subject: %q", subjectOf(ctx))
	}
	var r client.UsageReport
	if err := decodeBounded(body, &r); err != nil {
		return nil, err
	}
	if err := checkUsageReport(node, &r); err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	r.Node.APIVersion, r.Node.Kind, r.Node.Timestamp = client.MetricsAPIVersion, client.KindNodeMetrics, now
	for i := range r.Pods {
		p := &r.Pods[i]
		p.APIVersion, p.Kind, p.Timestamp = client.MetricsAPIVersion, client.KindPodMetrics, now
	}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("usage of node %s: encode: %w", node, err)
	}
	kv, err := s.usageKV(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := kv.Put(ctx, messaging.UsageKey(node), data); err != nil {
		return nil, client.Errorf(client.CodeUnavailable, "store usage of node %s: %v", node, err)
	}
	return struct{}{}, nil
}

// checkUsageReport checks the figures of a report from node; every
// failure is Invalid, naming the field.
func checkUsageReport(node string, r *client.UsageReport) error {
	if r.Node.Metadata.Name != node {
		return forbidden(node, messaging.VerbUsage, "nodes", "", r.Node.Metadata.Name, "it is another node")
	}
	if err := checkUsage("node.usage", r.Node.Usage); err != nil {
		return err
	}
	if err := checkWindow("node.window", r.Node.Window); err != nil {
		return err
	}
	if len(r.Pods) > maxUsagePods {
		return client.Errorf(client.CodeInvalid, "pods: Too many: %d, must have at most %d", len(r.Pods), maxUsagePods)
	}
	for i, p := range r.Pods {
		path := fmt.Sprintf("pods[%d]", i)
		if err := checkFields(
			field{path + ".metadata.namespace", p.Metadata.Namespace, 63, manifests.ValidateDNSLabel},
			field{path + ".metadata.name", p.Metadata.Name, 253, checkKeyName},
			field{path + ".metadata.uid", p.Metadata.UID, 128, nil}); err != nil {
			return err
		}
		if p.Metadata.Namespace == "" || p.Metadata.Name == "" || p.Metadata.UID == "" {
			return client.Errorf(client.CodeInvalid, "%s.metadata: namespace, name and uid required", path)
		}
		if err := checkWindow(path+".window", p.Window); err != nil {
			return err
		}
		if len(p.Containers) > maxUsageContainers {
			return client.Errorf(client.CodeInvalid, "%s.containers: Too many: %d, must have at most %d", path, len(p.Containers), maxUsageContainers)
		}
		for j, c := range p.Containers {
			cpath := fmt.Sprintf("%s.containers[%d]", path, j)
			if c.Name == "" || len(c.Name) > 253 {
				return client.Errorf(client.CodeInvalid, "%s.name: Invalid value: %q: 1 to 253 characters", cpath, c.Name)
			}
			if err := checkUsage(cpath+".usage", c.Usage); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkUsage allows cpu and memory, non-negative.
func checkUsage(path string, usage manifests.ResourceList) error {
	for name, q := range usage {
		if name != client.ResourceCPU && name != client.ResourceMemory {
			return client.Errorf(client.CodeInvalid, "%s: Unsupported value: %q: supported values: \"cpu\", \"memory\"", path, name)
		}
		if _, err := manifests.ParseQuantity(string(q)); err != nil {
			return client.Errorf(client.CodeInvalid, "%s.%s: Invalid value: %v", path, name, err)
		}
		if q.Sign() < 0 {
			return client.Errorf(client.CodeInvalid, "%s.%s: Invalid value: %q: must be non-negative", path, name, q)
		}
	}
	return nil
}

func checkWindow(path, window string) error {
	if window == "" {
		return nil
	}
	d, err := time.ParseDuration(window)
	if err != nil || d < 0 || d > maxUsageWindow {
		return client.Errorf(client.CodeInvalid, "%s: Invalid value: %q: want a duration from 0s to %v", path, window, maxUsageWindow)
	}
	return nil
}

// top returns the latest usage of the selected nodes or pods.
func (s *Server) top(ctx context.Context, body []byte) (any, error) {
	var req client.TopRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	if err := checkFields(
		field{"resource", req.Resource, maxResourceLen, nil},
		field{"namespace", req.Namespace, 63, manifests.ValidateDNSLabel},
		field{"name", req.Name, 253, checkKeyName},
		field{"labelSelector", req.LabelSelector, maxSelectorLen, nil}); err != nil {
		return nil, err
	}
	k, err := resolveResource(req.Resource)
	if err != nil {
		return nil, err
	}
	if k.Resource != "nodes" && k.Resource != "pods" {
		return nil, client.Errorf(client.CodeInvalid, "resource: Unsupported value: %q: top reads nodes or pods", req.Resource)
	}
	sel, err := manifests.ParseSelector(req.LabelSelector)
	if err != nil {
		return nil, client.Errorf(client.CodeInvalid, "%v", err)
	}
	ns := ""
	if k.Namespaced {
		ns = req.Namespace
	}
	var objs []manifests.Object
	if req.Name != "" {
		obj, err := s.st.Get(ctx, k.Resource, namespaceFor(k, ns), req.Name)
		if err != nil {
			return nil, err
		}
		if sel.Matches(obj.GetObjectMeta().Labels) {
			objs = append(objs, obj)
		}
	} else if objs, _, err = s.st.List(ctx, k.Resource, ns, sel); err != nil {
		return nil, err
	}
	var nodes []string
	for _, obj := range objs {
		switch o := obj.(type) {
		case *manifests.Node:
			nodes = append(nodes, o.Name)
		case *manifests.Pod:
			if o.Spec.NodeName != "" {
				nodes = append(nodes, o.Spec.NodeName)
			}
		}
	}
	reports, err := s.readUsage(ctx, nodes)
	if err != nil {
		return nil, err
	}
	res := client.TopResult{Selected: len(objs)}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *manifests.Node:
			if r := reports[o.Name]; r != nil {
				m := r.Node
				m.Metadata = manifests.ObjectMeta{Name: o.Name, Labels: o.Labels}
				res.Nodes = append(res.Nodes, m)
			}
		case *manifests.Pod:
			r := reports[o.Spec.NodeName]
			if r == nil {
				continue
			}
			if m, ok := r.Pod(o.Namespace, o.Name, o.UID); ok {
				m.Metadata = manifests.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, Labels: o.Labels}
				res.Pods = append(res.Pods, m)
			}
		}
	}
	slices.SortFunc(res.Nodes, func(a, b client.NodeMetrics) int { return cmp.Compare(a.Metadata.Name, b.Metadata.Name) })
	slices.SortFunc(res.Pods, func(a, b client.PodMetrics) int {
		return cmp.Or(cmp.Compare(a.Metadata.Namespace, b.Metadata.Namespace), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	return res, nil
}

// readUsage returns the stored reports of nodes (those that have one): a
// get each for a few nodes, one watch of the whole bucket for many.
func (s *Server) readUsage(ctx context.Context, nodes []string) (map[string]*client.UsageReport, error) {
	want := map[string]bool{}
	for _, n := range nodes {
		want[n] = true
	}
	out := map[string]*client.UsageReport{}
	if len(want) == 0 {
		return out, nil
	}
	kv, err := s.usageKV(ctx)
	if err != nil {
		return nil, err
	}
	add := func(node string, data []byte) {
		var r client.UsageReport
		if err := json.Unmarshal(data, &r); err != nil || r.Node.Metadata.Name != node {
			s.log.Warn("usage: unreadable report", "node", node, "err", err)
			return
		}
		out[node] = &r
	}
	if len(want) <= usageGetMax {
		for node := range want {
			e, err := kv.Get(ctx, messaging.UsageKey(node))
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return nil, client.Errorf(client.CodeUnavailable, "read usage of node %s: %v", node, err)
			}
			add(node, e.Value())
		}
		return out, nil
	}
	w, err := kv.WatchFiltered(ctx, []string{messaging.UsageFilter()}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, client.Errorf(client.CodeUnavailable, "read usage: %v", err)
	}
	defer w.Stop()
	byKey := map[string]string{}
	for node := range want {
		byKey[messaging.UsageKey(node)] = node
	}
	for {
		select {
		case <-ctx.Done():
			return nil, client.Errorf(client.CodeUnavailable, "read usage: %v", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, client.Errorf(client.CodeUnavailable, "read usage: the watch ended")
			}
			if e == nil { // every stored report seen
				return out, nil
			}
			if node, ok := byKey[e.Key()]; ok {
				add(node, e.Value())
			}
		}
	}
}
