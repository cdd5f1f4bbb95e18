// Package messaging is the only package that knows NATS subjects, JetStream
// buckets and object stores, and how to start the embedded server. Every name
// is built here so that one node's whole view is one prefix.
package messaging

import (
	"fmt"
	"strings"
)

// Buckets and stores.
const (
	// BucketObjects holds every API object under ObjectKey.
	BucketObjects = "edge-objects"
	// BucketAssignments holds the pods bound to each node under AssignmentKey.
	BucketAssignments = "edge-assign"
	// BucketLeases holds one heartbeat lease per node under LeaseKey.
	BucketLeases = "edge-leases"
	// StoreModules is the object store of pushed wasm modules (and images).
	StoreModules = "edge-modules"
)

// API service.
const (
	APIServiceName = "edge-api"
	APIVersion     = "1.0.0"
	apiPrefix      = "edge.api.v1"
	watchPrefix    = "edge.watch.v1"
	nodePrefix     = "edge.node.v1"
)

// API verbs, one handler each.
const (
	VerbApply        = "apply"
	VerbGet          = "get"
	VerbList         = "list"
	VerbDelete       = "delete"
	VerbUpdate       = "update"
	VerbUpdateStatus = "status"
)

// APIPrefix is the subject prefix of the API service group.
func APIPrefix() string { return apiPrefix }

// APISubject is the request subject of one API verb.
func APISubject(verb string) string { return apiPrefix + "." + verb }

// EncodeToken makes a name safe as one subject token or key token. Kubernetes
// names may contain '.', which NATS uses as a separator; they never contain
// '_', so '.' is mapped to '_' and back.
func EncodeToken(s string) string { return strings.ReplaceAll(s, ".", "_") }

// DecodeToken reverses EncodeToken.
func DecodeToken(s string) string { return strings.ReplaceAll(s, "_", ".") }

// clusterScope stands for the namespace of cluster-scoped objects in keys.
const clusterScope = "_"

func nsToken(ns string) string {
	if ns == "" {
		return clusterScope
	}
	return EncodeToken(ns)
}

// ObjectKey is the key of an object in BucketObjects: resource.namespace.name.
func ObjectKey(resource, namespace, name string) string {
	return resource + "." + nsToken(namespace) + "." + EncodeToken(name)
}

// ObjectFilter is the KV key filter for a resource in one namespace, or in
// all namespaces when namespace is "*".
func ObjectFilter(resource, namespace string) string {
	if namespace == "*" {
		return resource + ".*.*"
	}
	return resource + "." + nsToken(namespace) + ".*"
}

// ParseObjectKey splits an ObjectKey.
func ParseObjectKey(key string) (resource, namespace, name string, err error) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("object key %q: want resource.namespace.name", key)
	}
	ns := parts[1]
	if ns == clusterScope {
		ns = ""
	}
	return parts[0], DecodeToken(ns), DecodeToken(parts[2]), nil
}

// AssignmentKey is the key of a pod bound to node in BucketAssignments.
func AssignmentKey(node, namespace, pod string) string {
	return EncodeToken(node) + "." + nsToken(namespace) + "." + EncodeToken(pod)
}

// AssignmentFilter selects every assignment of one node.
func AssignmentFilter(node string) string { return EncodeToken(node) + ".>" }

// ParseAssignmentKey splits an AssignmentKey.
func ParseAssignmentKey(key string) (node, namespace, pod string, err error) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("assignment key %q: want node.namespace.pod", key)
	}
	return DecodeToken(parts[0]), DecodeToken(parts[1]), DecodeToken(parts[2]), nil
}

// LeaseKey is the key of a node's heartbeat lease in BucketLeases.
func LeaseKey(node string) string { return EncodeToken(node) }

// LeaderKey is the key of the leader-election lease called name in
// BucketLeases. It has two tokens, so it never collides with a node's
// LeaseKey (one token) and watchers of node leases skip it by watching "*".
func LeaderKey(name string) string { return "leader." + EncodeToken(name) }

// ClusterIPClaimKey is the key in BucketLeases that claims a Service
// cluster IP (two tokens, so node-lease watchers skip it).
func ClusterIPClaimKey(ip string) string { return "svcip." + EncodeToken(ip) }

// NodePortClaimKey is the key in BucketLeases that claims a Service
// node port.
func NodePortClaimKey(port int32) string { return fmt.Sprintf("nodeport.%d", port) }

// PodCIDRClaimKey is the key in BucketLeases that claims a node's pod
// CIDR (e.g. 10.244.3.0/24).
func PodCIDRClaimKey(cidr string) string {
	return "podcidr." + strings.NewReplacer(".", "_", "/", "-").Replace(cidr)
}

// NodeLeasesFilter selects the node leases in BucketLeases (not the
// leader-election leases).
const NodeLeasesFilter = "*"

// WatchSubject is where the control plane publishes each change of an object.
func WatchSubject(resource, namespace, name string) string {
	return watchPrefix + "." + resource + "." + nsToken(namespace) + "." + EncodeToken(name)
}

// WatchFilter subscribes to changes of a resource in a namespace ("*" = all).
func WatchFilter(resource, namespace string) string {
	if namespace == "*" {
		return watchPrefix + "." + resource + ".*.*"
	}
	return watchPrefix + "." + resource + "." + nsToken(namespace) + ".*"
}

// Node verbs served by each agent.
const (
	NodeVerbLogs = "logs"
	// NodeVerbExec starts a command in a container; see NodeExecStdinSubject.
	NodeVerbExec = "exec"
)

// NodeExecStdinSubject is where the client of an exec session publishes the
// command's stdin (and its end) to the agent of node.
func NodeExecStdinSubject(node, session string) string {
	return NodeSubject(node, NodeVerbExec) + ".stdin." + EncodeToken(session)
}

// NodeSubject is a request subject served by the agent of node.
func NodeSubject(node, verb string) string {
	return nodePrefix + "." + EncodeToken(node) + "." + verb
}

// ModuleObjectName is the object-store name of a module pushed as name[:tag].
func ModuleObjectName(ref string) string { return "ref/" + ref }

// ModuleDigestName is the object-store name of a module by its sha256 (hex).
func ModuleDigestName(hexDigest string) string { return "sha256/" + hexDigest }

// Integration subjects: a versioned, documented tree (docs/integrations.md)
// that outside consumers may follow with any NATS client.
const (
	eventsPrefix = "edge.events.v1"
	statusPrefix = "edge.status.v1"
	// StreamEvents is the JetStream stream that keeps the integration
	// subjects for consumers that were offline.
	StreamEvents = "EDGE_EVENTS"
	// EventsFilter matches every event subject.
	EventsFilter = eventsPrefix + ".>"
	// StatusFilter matches every status subject.
	StatusFilter = statusPrefix + ".>"
	// NodeVerbPrepull asks an agent to fetch a module or image into its
	// cache ahead of a rollout.
	NodeVerbPrepull = "prepull"
)

// EventSubject is where an Event about the object kind/name in namespace
// is published ("_" stands for cluster scope).
func EventSubject(namespace, kind, name string) string {
	return eventsPrefix + "." + nsToken(namespace) + "." + subjectToken(kind) + "." + subjectToken(name)
}

// PodStatusSubject is where a pod's status summary is published.
func PodStatusSubject(namespace, name string) string {
	return statusPrefix + ".pod." + nsToken(namespace) + "." + EncodeToken(name)
}

// NodeStatusSubject is where a node's state (Ready, NotReady,
// Unreachable) is published.
func NodeStatusSubject(name string) string {
	return statusPrefix + ".node." + EncodeToken(name)
}

// subjectToken is EncodeToken that also never yields an empty token or a
// wildcard.
func subjectToken(s string) string {
	if s == "" {
		return clusterScope
	}
	return strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(s)
}
