package client

import (
	"context"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// Resource usage in the shapes of the Kubernetes metrics API
// (metrics.k8s.io/v1beta1 NodeMetrics and PodMetrics): agents report it,
// the control plane keeps the latest report of each node, edgectl top and
// the autoscaler read it. See docs/top.md.
const (
	// MetricsAPIVersion is the apiVersion of NodeMetrics and PodMetrics.
	MetricsAPIVersion = "metrics.k8s.io/v1beta1"
	KindNodeMetrics   = "NodeMetrics"
	KindPodMetrics    = "PodMetrics"
)

// Usage resource names: usage["cpu"] in cores ("250m", "1234567n"),
// usage["memory"] in bytes ("2048Ki").
const (
	ResourceCPU    = "cpu"
	ResourceMemory = "memory"
)

// NodeMetrics is the usage of a whole node over Window, ending at
// Timestamp. Usage has no "cpu" until the agent has two samples.
type NodeMetrics struct {
	APIVersion string               `json:"apiVersion"`
	Kind       string               `json:"kind"`
	Metadata   manifests.ObjectMeta `json:"metadata"`
	Timestamp  time.Time            `json:"timestamp"`
	// Window is the time the CPU figure is averaged over ("15s"); "0s"
	// when there is no CPU figure yet.
	Window string                 `json:"window"`
	Usage  manifests.ResourceList `json:"usage"`
}

// PodMetrics is the usage of a pod's running containers. Metadata holds
// the pod's namespace, name and UID.
type PodMetrics struct {
	APIVersion string               `json:"apiVersion"`
	Kind       string               `json:"kind"`
	Metadata   manifests.ObjectMeta `json:"metadata"`
	Timestamp  time.Time            `json:"timestamp"`
	Window     string               `json:"window"`
	Containers []ContainerMetrics   `json:"containers"`
}

// ContainerMetrics is one container's usage. A container whose runtime
// cannot measure CPU time (wasm) has no "cpu".
type ContainerMetrics struct {
	Name  string                 `json:"name"`
	Usage manifests.ResourceList `json:"usage"`
}

// UsageReport is what an agent reports every --usage-interval on the
// node-scoped subject of messaging.VerbUsage, and what the control plane
// stores under messaging.UsageKey: the node and the pods running on it.
type UsageReport struct {
	Node NodeMetrics  `json:"node"`
	Pods []PodMetrics `json:"pods,omitempty"`
}

// Pod returns the metrics of the pod namespace/name in r, if r has them
// and, when uid is set, they are of the pod with that UID.
func (r *UsageReport) Pod(namespace, name, uid string) (PodMetrics, bool) {
	for _, p := range r.Pods {
		if p.Metadata.Namespace == namespace && p.Metadata.Name == name && (uid == "" || p.Metadata.UID == uid) {
			return p, true
		}
	}
	return PodMetrics{}, false
}

// TopRequest asks for the usage of nodes or pods (Resource "nodes" or
// "pods", or an alias). Name selects one; Namespace "" means all
// namespaces (pods).
type TopRequest struct {
	Resource      string `json:"resource"`
	Namespace     string `json:"namespace,omitempty"`
	Name          string `json:"name,omitempty"`
	LabelSelector string `json:"labelSelector,omitempty"`
}

// TopResult holds the metrics of the selected objects that have some
// (sorted by namespace and name) and how many objects were selected in
// all: Selected > 0 with no metrics means none has reported yet.
type TopResult struct {
	Nodes    []NodeMetrics `json:"nodes,omitempty"`
	Pods     []PodMetrics  `json:"pods,omitempty"`
	Selected int           `json:"selected"`
}

// ReportUsage sends the agent's usage report (a client made AsNode).
func (c *Client) ReportUsage(ctx context.Context, r UsageReport) error {
	return c.call(ctx, messaging.VerbUsage, r, nil)
}

// Top reads the latest usage of nodes or pods.
func (c *Client) Top(ctx context.Context, req TopRequest) (TopResult, error) {
	var res TopResult
	err := c.call(ctx, messaging.VerbTop, req, &res)
	return res, err
}
