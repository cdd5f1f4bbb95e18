package auth

import (
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/edgeorch/edgeorch/messaging"
)

// Role is what a user may do.
type Role string

// Roles.
const (
	// RoleAdmin may do everything in the account.
	RoleAdmin Role = "admin"
	// RoleReadonly may get and list through the API, watch, follow the
	// integration subjects and read logs.
	RoleReadonly Role = "readonly"
	// RoleNode is the agent of one node: its own assignments, lease,
	// node-scoped API subjects and node subjects.
	RoleNode Role = "node"
	// RoleJoiner may only ask to join with a token.
	RoleJoiner Role = "joiner"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleReadonly, RoleNode, RoleJoiner, RoleUser:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want admin, readonly, node, joiner or user", s)
}

// JetStream API subjects (the parts permissions need).
const (
	jsAPI = "$JS.API."
	jsFC  = "$JS.FC."
	jsAck = "$JS.ACK."
)

// streamReadSubjects lets a user read a stream through ordered consumers
// whose filter matches filter ("" for any filter), direct gets of subjects
// matching direct, and the stream's info.
func streamReadSubjects(stream, filter, direct string) []string {
	out := []string{
		jsAPI + "STREAM.INFO." + stream,
		jsAPI + "CONSUMER.DELETE." + stream + ".*",
		jsAPI + "CONSUMER.INFO." + stream + ".*",
		jsFC + stream + ".>",
		jsAPI + "DIRECT.GET." + stream + "." + direct,
	}
	if filter == "" {
		out = append(out, jsAPI+"CONSUMER.CREATE."+stream, jsAPI+"CONSUMER.CREATE."+stream+".>",
			jsAPI+"CONSUMER.MSG.NEXT."+stream+".*", jsAck+stream+".>", jsAPI+"STREAM.MSG.GET."+stream)
	} else {
		out = append(out, jsAPI+"CONSUMER.CREATE."+stream+".*."+filter)
	}
	return out
}

// PermissionsOf returns the subject permissions of role. node names the
// node of RoleNode and the token id of RoleJoiner.
func PermissionsOf(role Role, node string) (jwt.Permissions, error) {
	var p jwt.Permissions
	switch role {
	case RoleAdmin:
		return p, nil // everything in the account
	case RoleReadonly:
		p.Pub.Allow.Add(
			messaging.APISubject(messaging.VerbGet),
			messaging.APISubject(messaging.VerbList),
			// edgectl top.
			messaging.APISubject(messaging.VerbTop),
			messaging.NodeVerbsFilter(messaging.NodeVerbLogs),
			jsAPI+"INFO",
			// edgectl version: the API service's info.
			"$SRV.INFO."+messaging.APIServiceName,
		)
		p.Pub.Allow.Add(streamReadSubjects(messaging.StreamEvents, "", ">")...)
		p.Sub.Allow.Add(
			messaging.ReadonlyInboxPrefix+".>",
			messaging.WatchAllFilter,
			messaging.EventsFilter,
			messaging.StatusFilter,
		)
		return p, nil
	case RoleNode:
		if node == "" {
			return p, fmt.Errorf("node role: node name required")
		}
		assign := messaging.KVSubject(messaging.BucketAssignments, messaging.AssignmentFilter(node))
		lease := messaging.KVSubject(messaging.BucketLeases, messaging.LeaseKey(node))
		heartbeat := messaging.KVSubject(messaging.BucketHeartbeats, messaging.LeaseKey(node))
		p.Pub.Allow.Add(
			messaging.NodeAPISubject(node, ">"),
			jsAPI+"INFO",
			heartbeat,
			jsAPI+"STREAM.INFO."+messaging.KVStream(messaging.BucketHeartbeats),
			jsAPI+"DIRECT.GET."+messaging.KVStream(messaging.BucketHeartbeats)+"."+heartbeat,
			// The leases bucket, where agents of before BucketHeartbeats
			// write (and where an agent writes against an older control
			// plane).
			lease,
			jsAPI+"STREAM.INFO."+messaging.KVStream(messaging.BucketLeases),
			jsAPI+"DIRECT.GET."+messaging.KVStream(messaging.BucketLeases)+"."+lease,
			// Log and exec output goes to the inbox the asking client
			// named (nats.go's NewInbox: prefix.<nuid>, two tokens).
			// Not ".>": a reply inbox of a client's own requests has
			// three tokens (prefix.<mux>.<id>), so a node cannot forge
			// answers to requests it was not asked.
			messaging.DefaultInboxPrefix+".*",
			messaging.ReadonlyInboxPrefix+".*",
		)
		p.Pub.Allow.Add(streamReadSubjects(messaging.KVStream(messaging.BucketAssignments), assign, assign)...)
		p.Pub.Allow.Add(streamReadSubjects(messaging.ObjectStream(messaging.StoreModules), "", ">")...)
		p.Sub.Allow.Add(
			messaging.NodeInboxPrefix(node)+".>",
			// Its verbs, with the port-forward and cp sessions
			// (<verb>.session.<id>, client.TunnelSubject); their data
			// goes back to the client's inbox (DefaultInboxPrefix.*).
			messaging.NodeSubjectsFilter(node),
			// Its assignment changes, republished by the bucket's
			// stream (core NATS, no consumer per node).
			messaging.AssignmentNotifyFilter(node),
			// The agent's service proxy, DNS and pod network.
			messaging.WatchResourceFilter("services"),
			messaging.WatchResourceFilter("endpoints"),
			messaging.WatchResourceFilter("nodes"),
			// The agent's Ingress proxy (docs/ingress.md).
			messaging.WatchResourceFilter("ingresses"),
		)
		p.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		return p, nil
	case RoleUser:
		// node names the RBAC user (user.go).
		return userPermissions(node)
	case RoleJoiner:
		if node == "" {
			return p, fmt.Errorf("joiner role: token id required")
		}
		p.Pub.Allow.Add(messaging.JoinSubject())
		p.Sub.Allow.Add(messaging.JoinInboxPrefix(node) + ".>")
		return p, nil
	}
	return p, fmt.Errorf("role %q: unknown", role)
}
