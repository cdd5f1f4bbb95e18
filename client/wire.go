// Package client is the Go client of the control plane API (NATS request/reply)
// and of the module store. It also defines the wire types the API server
// (controlplane/api) decodes, so both sides share one definition.
package client

import "encoding/json"

// Error codes carried by API errors.
const (
	CodeNotFound    = "NotFound"
	CodeConflict    = "Conflict"
	CodeInvalid     = "Invalid"
	CodeForbidden   = "Forbidden"
	CodeUnavailable = "Unavailable"
	CodeInternal    = "Internal"
	CodeExists      = "AlreadyExists"
)

// Apply results.
const (
	ResultCreated    = "created"
	ResultConfigured = "configured"
	ResultUnchanged  = "unchanged"
)

// Response is the envelope of every API reply: either Error or the verb's
// result in Result.
type Response struct {
	Error  *StatusError    `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// ApplyRequest creates the object or updates it. When the object carries
// metadata.resourceVersion the update is a compare-and-swap against it.
type ApplyRequest struct {
	Object json.RawMessage `json:"object"`
	DryRun bool            `json:"dryRun,omitempty"`
}

// ApplyResult says what apply did and returns the stored object.
type ApplyResult struct {
	Result string          `json:"result"`
	Object json.RawMessage `json:"object"`
}

// GetRequest names one object.
type GetRequest struct {
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// ListRequest selects objects of one resource. Namespace "" means all
// namespaces; LabelSelector uses kubectl's syntax.
type ListRequest struct {
	Resource      string `json:"resource"`
	Namespace     string `json:"namespace,omitempty"`
	LabelSelector string `json:"labelSelector,omitempty"`
}

// ListResult holds the objects and the revision the list was read at.
type ListResult struct {
	Items           []json.RawMessage `json:"items"`
	ResourceVersion string            `json:"resourceVersion"`
}

// DeleteRequest names the object to delete. ResourceVersion, when set,
// makes the delete conditional.
type DeleteRequest struct {
	Resource        string `json:"resource"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// PropagationPolicy says what becomes of the object's dependents:
	// "Background" (the default: the object goes now, the garbage
	// collector deletes its dependents afterwards), "Foreground" (the
	// dependents go first; until then the object stays with a
	// deletionTimestamp) or "Orphan" (the dependents stay, without their
	// reference to the object).
	PropagationPolicy string `json:"propagationPolicy,omitempty"`
}

// Deletion propagation policies.
const (
	DeletePropagationBackground = "Background"
	DeletePropagationForeground = "Foreground"
	DeletePropagationOrphan     = "Orphan"
)

// DeleteResult returns the object as it was deleted.
type DeleteResult struct {
	Object json.RawMessage `json:"object"`
}

// UpdateRequest replaces an object (update) or only its status (status).
// metadata.resourceVersion is required: the write is a compare-and-swap.
type UpdateRequest struct {
	Object json.RawMessage `json:"object"`
}

// UpdateResult returns the stored object with its new resourceVersion.
type UpdateResult struct {
	Object json.RawMessage `json:"object"`
}

// WatchEvent is published on messaging.WatchSubject for every change.
type WatchEvent struct {
	// Type is ADDED, MODIFIED or DELETED.
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// Watch event types.
const (
	Added    = "ADDED"
	Modified = "MODIFIED"
	Deleted  = "DELETED"
)

// LogsRequest asks an agent for a container's log. With Follow the agent
// sends each chunk as a request to Inbox and stops when nobody answers.
type LogsRequest struct {
	Namespace  string `json:"namespace"`
	Pod        string `json:"pod"`
	Container  string `json:"container,omitempty"`
	Follow     bool   `json:"follow,omitempty"`
	TailLines  int    `json:"tailLines,omitempty"`
	Timestamps bool   `json:"timestamps,omitempty"`
	Previous   bool   `json:"previous,omitempty"`
	Inbox      string `json:"inbox,omitempty"`
}

// LogsChunk is one piece of log output. The last chunk has EOF set.
type LogsChunk struct {
	Data  []byte       `json:"data,omitempty"`
	EOF   bool         `json:"eof,omitempty"`
	Error *StatusError `json:"error,omitempty"`
}

// Lease is a node's heartbeat, written by its agent under messaging.LeaseKey.
// The control plane judges freshness by the server-side time of the KV
// entry, never by RenewTime (devices may have no RTC).
type Lease struct {
	Node      string `json:"node"`
	RenewTime string `json:"renewTime"`
	// DurationSeconds is how long the agent means the lease to last.
	DurationSeconds int    `json:"durationSeconds"`
	AgentVersion    string `json:"agentVersion,omitempty"`
}

// PrepullRequest asks an agent, on messaging.NodeSubject(node,
// messaging.NodeVerbPrepull), to fetch a module or image into its caches
// ahead of a rollout (edgectl prepull; docs/integrations.md).
type PrepullRequest struct {
	// Image is the reference a pod's container would name.
	Image string `json:"image"`
	// Runtime is "wasm" (default) or "oci".
	Runtime string `json:"runtime,omitempty"`
}

// PrepullReply is the agent's answer: the digest now in its cache, or
// why it could not fetch it.
type PrepullReply struct {
	Digest string `json:"digest,omitempty"`
	Error  string `json:"error,omitempty"`
}

// VerbApplyBatch is the API verb (subject messaging.APISubject(VerbApplyBatch))
// that applies several objects in one request: what edgectl apply uses for
// a directory of manifests. A server without it has no responders there;
// clients then apply one object per request.
const VerbApplyBatch = "applyBatch"

// MaxApplyBatch bounds the objects of one ApplyBatchRequest.
const MaxApplyBatch = 100

// ApplyBatchRequest applies each object as an ApplyRequest would, each on
// its own: one failing does not stop the others. The objects are applied
// concurrently, so a batch must not name the same object twice.
type ApplyBatchRequest struct {
	Objects []json.RawMessage `json:"objects"`
	DryRun  bool              `json:"dryRun,omitempty"`
}

// ApplyBatchResult holds one item per object of the request, in order.
type ApplyBatchResult struct {
	Items []ApplyBatchItem `json:"items"`
}

// ApplyBatchItem says what apply did with one object of a batch (Result
// and the stored object's ResourceVersion), or why it failed (Error).
// The stored object itself is not sent back.
type ApplyBatchItem struct {
	Result          string       `json:"result,omitempty"`
	ResourceVersion string       `json:"resourceVersion,omitempty"`
	Error           *StatusError `json:"error,omitempty"`
}
