package edgectl

import (
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// nodeLastSeen is the LAST-SEEN column of `get nodes -o wide`: the age of
// the Ready condition's lastHeartbeatTime, as kubectl prints ages (12s,
// 3m, 2d4h); "<unknown>" for a node that never reported one. The control
// plane records a heartbeat at most every 30 s while the node stays Ready
// (longer in fleets past 600 nodes), so a Ready node may show up to that.
func nodeLastSeen(n *manifests.Node, now time.Time) string {
	for _, c := range n.Status.Conditions {
		if c.Type == manifests.NodeReady {
			return age(now, c.LastHeartbeatTime)
		}
	}
	return "<unknown>"
}
