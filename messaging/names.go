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
	// BucketHeartbeats holds one heartbeat lease per node under LeaseKey,
	// in memory: at 10,000 nodes heartbeats are ~1,000 writes a second,
	// more than the disk syncs, and a lease lost with the control plane
	// costs nothing (the node lifecycle judges nodes from its own start,
	// and agents write again within a heartbeat interval).
	BucketHeartbeats = "edge-heartbeats"
	// BucketLeases holds the service IP and pod CIDR allocations, and the
	// heartbeat leases of agents whose credentials predate BucketHeartbeats.
	BucketLeases = "edge-leases"
	// BucketLeader holds the control planes' leader-election leases under
	// LeaderKey: a stream of its own, because JetStream syncs each write of a
	// stream after the previous one, and behind the ~1,000 heartbeats a
	// second of 10,000 nodes a renewal missed its deadline.
	BucketLeader = "edge-leader"
	// BucketClaims holds the claims on node pod CIDRs (PodCIDRClaimKey):
	// out of BucketLeases for the same reason as BucketLeader; at 10,000
	// nodes a claim waited more than its sync's 10 s behind heartbeats.
	BucketClaims = "edge-claims"
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

// assignNotifyPrefix is where the assignments bucket's stream republishes
// every change (AssignmentsRePublish): core NATS messages, one per put,
// delete or purge, under the assignment key.
const assignNotifyPrefix = "edge.asg.v1"

// AssignmentNotifySubject is the core NATS subject on which a change of
// assignment key is republished.
func AssignmentNotifySubject(key string) string { return assignNotifyPrefix + "." + key }

// AssignmentNotifyFilter matches the republished changes of every
// assignment of one node: what its agent subscribes to (and all its
// credentials let it subscribe to).
func AssignmentNotifyFilter(node string) string {
	return assignNotifyPrefix + "." + AssignmentFilter(node)
}

// ParseAssignmentNotifySubject returns the assignment key of an
// AssignmentNotifySubject.
func ParseAssignmentNotifySubject(subject string) (key string, err error) {
	key, ok := strings.CutPrefix(subject, assignNotifyPrefix+".")
	if !ok || key == "" {
		return "", fmt.Errorf("assignment notification subject %q: want %s.<node>.<namespace>.<pod>", subject, assignNotifyPrefix)
	}
	if _, _, _, err := ParseAssignmentKey(key); err != nil {
		return "", fmt.Errorf("assignment notification subject %q: %w", subject, err)
	}
	return key, nil
}

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
// BucketLeader.
func LeaderKey(name string) string { return "leader." + EncodeToken(name) }

// ClusterIPClaimKey is the key in BucketLeases that claims a Service
// cluster IP (two tokens, so node-lease watchers skip it).
func ClusterIPClaimKey(ip string) string { return "svcip." + EncodeToken(ip) }

// NodePortClaimKey is the key in BucketLeases that claims a Service
// node port.
func NodePortClaimKey(port int32) string { return fmt.Sprintf("nodeport.%d", port) }

// PodCIDRClaimKey is the key in BucketClaims that claims a node's pod
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
	// IntegrationsFilter matches the whole public integration tree.
	IntegrationsFilter = integrationRoot + ".>"
	// IngestFilter matches the internal tree the control planes publish
	// on (see IngestSubject). StreamEvents maps it onto the public tree.
	IngestFilter       = ingestPrefix + ".>"
	integrationRoot    = "edge"
	ingestPrefix       = "_edge.ingest"
	eventsIngestFilter = ingestPrefix + ".events.v1.>"
	statusIngestFilter = ingestPrefix + ".status.v1.>"
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

// IngestSubject is the internal subject on which control planes publish
// the message meant for the public integration subject public (built by
// EventSubject, PodStatusSubject or NodeStatusSubject). StreamEvents stores
// it under public, once per Nats-Msg-Id, and republishes it on public:
// plain subscribers see one copy however many control planes publish.
// public must be under IntegrationsFilter.
func IngestSubject(public string) string {
	return ingestPrefix + strings.TrimPrefix(public, integrationRoot)
}

// subjectToken is EncodeToken that also never yields an empty token or a
// wildcard.
func subjectToken(s string) string {
	if s == "" {
		return clusterScope
	}
	return strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(s)
}

// Security names (docs/security.md): node-scoped API subjects, the join
// service, inbox prefixes per identity and the buckets of join tokens and
// node keys.
const (
	// BucketJoinTokens holds the join tokens (hashed) under TokenKey.
	BucketJoinTokens = "edge-join-tokens"
	// BucketNodeKeys records the user public keys issued to each node
	// under NodeKeysKey (what `edgectl node revoke` revokes).
	BucketNodeKeys = "edge-node-keys"
	// VerbTokenCreate creates a join token (admin only).
	VerbTokenCreate = "token"
	// VerbNodeRevoke revokes a node's credentials (admin only).
	VerbNodeRevoke = "revoke"
	joinSubject    = "edge.join.v1"
	nodeAPIToken   = "node"
	inboxPrefix    = "_INBOX_"
	// ReadonlyInboxPrefix is the inbox prefix of read-only users (upper
	// case: node names are lower case, so it never collides with theirs).
	ReadonlyInboxPrefix = "_INBOX_RO"
	// DefaultInboxPrefix is nats.go's, used by admin users.
	DefaultInboxPrefix = "_INBOX"
)

// JoinSubject is where a device with a join token asks for its node
// credentials.
func JoinSubject() string { return joinSubject }

// NodeAPISubject is the request subject of an API verb sent by the agent
// of node: the API server takes the node from the subject, and the node's
// permissions let it publish only under its own name.
func NodeAPISubject(node, verb string) string {
	return apiPrefix + "." + nodeAPIToken + "." + EncodeToken(node) + "." + verb
}

// NodeAPIFilter matches the node-scoped subjects of verb for every node.
func NodeAPIFilter(verb string) string {
	return apiPrefix + "." + nodeAPIToken + ".*." + verb
}

// ParseNodeAPISubject returns the node and verb of a NodeAPISubject.
func ParseNodeAPISubject(subject string) (node, verb string, ok bool) {
	rest, found := strings.CutPrefix(subject, apiPrefix+"."+nodeAPIToken+".")
	if !found {
		return "", "", false
	}
	tok, verb, found := strings.Cut(rest, ".")
	if !found || tok == "" || verb == "" || strings.Contains(verb, ".") {
		return "", "", false
	}
	return DecodeToken(tok), verb, true
}

// NodeInboxPrefix is the inbox prefix (nats.CustomInboxPrefix) of the
// agent of node; its permissions let it subscribe only there.
func NodeInboxPrefix(node string) string { return inboxPrefix + EncodeToken(node) }

// JoinInboxPrefix is the inbox prefix of the holder of join token id.
func JoinInboxPrefix(id string) string { return inboxPrefix + "JOIN_" + id }

// NodeSubjectsFilter matches every subject served by the agent of node.
func NodeSubjectsFilter(node string) string { return nodePrefix + "." + EncodeToken(node) + ".>" }

// NodeVerbsFilter matches verb on every node (e.g. logs for read-only users).
func NodeVerbsFilter(verb string) string { return nodePrefix + ".*." + verb }

// WatchResourceFilter matches every watch subject of a resource.
func WatchResourceFilter(resource string) string { return watchPrefix + "." + resource + ".>" }

// WatchAllFilter matches every watch subject.
const WatchAllFilter = watchPrefix + ".>"

// TokenKey is the key of join token id in BucketJoinTokens.
func TokenKey(id string) string { return EncodeToken(id) }

// NodeKeysKey is the key of node's issued keys in BucketNodeKeys.
func NodeKeysKey(node string) string { return EncodeToken(node) }

// KVSubject is the stream subject of key in KV bucket (what a KV put
// publishes to).
func KVSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// KVStream is the stream that backs KV bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// ObjectStream is the stream that backs object store name.
func ObjectStream(store string) string { return "OBJ_" + store }

// ObjectChunkSubject is the subject of the chunks of one object of bucket,
// named by the object's NUID (nats.go's layout: $O.<bucket>.C.<nuid>).
func ObjectChunkSubject(bucket, nuid string) string { return "$O." + bucket + ".C." + nuid }

// SecurityServiceName is the micro service of the node-scoped API verbs,
// join tokens, joins and revocation.
const SecurityServiceName = "edge-api-nodes"
