package deployment

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// Condition reasons (Kubernetes').
const (
	ReasonNewReplicaSetCreated    = "NewReplicaSetCreated"
	ReasonFoundNewReplicaSet      = "FoundNewReplicaSet"
	ReasonReplicaSetUpdated       = "ReplicaSetUpdated"
	ReasonNewReplicaSetAvailable  = "NewReplicaSetAvailable"
	ReasonProgressDeadlineExceed  = "ProgressDeadlineExceeded"
	ReasonDeploymentPaused        = "DeploymentPaused"
	ReasonDeploymentResumed       = "DeploymentResumed"
	ReasonDeploymentPartitioned   = "DeploymentPartitioned"
	ReasonMinimumReplicasAvail    = "MinimumReplicasAvailable"
	ReasonMinimumReplicasUnavail  = "MinimumReplicasUnavailable"
	ReasonFailedReplicaSetCreate  = "ReplicaSetCreateError"
	EventScalingReplicaSet        = "ScalingReplicaSet"
	EventSelectingAll             = "SelectingAll"
	EventDeploymentRollbackFailed = "DeploymentRollbackRevisionNotFound"
)

// safeAlphanums is Kubernetes' rand.SafeEncodeString alphabet: no vowels
// (no words) and no confusable characters.
const safeAlphanums = "bcdfghjklmnpqrstvwxz2456789"

// ComputeHash returns the pod-template-hash of template: an FNV-32a hash
// of its JSON (and of collisionCount, when set) in Kubernetes' safe
// encoding.
func ComputeHash(template *manifests.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	raw, err := json.Marshal(template)
	if err != nil {
		// Templates are plain data; a failure here is a programming error.
		panic(fmt.Sprintf("hash pod template: %v", err))
	}
	h.Write(raw)
	if collisionCount != nil {
		var b [8]byte
		binary.LittleEndian.PutUint32(b[:], uint32(*collisionCount))
		h.Write(b[:])
	}
	s := strconv.FormatUint(uint64(h.Sum32()), 10)
	out := make([]byte, len(s))
	for i := range len(s) {
		out[i] = safeAlphanums[int(s[i])%len(safeAlphanums)]
	}
	return string(out)
}

// EqualIgnoreHash reports whether two pod templates are equal apart from
// the pod-template-hash label.
func EqualIgnoreHash(a, b *manifests.PodTemplateSpec) bool {
	strip := func(t *manifests.PodTemplateSpec) []byte {
		cp := *t
		if _, ok := cp.Labels[manifests.DefaultDeploymentUniqueLabelKey]; ok {
			cp.Labels = make(map[string]string, len(t.Labels))
			for k, v := range t.Labels {
				if k != manifests.DefaultDeploymentUniqueLabelKey {
					cp.Labels[k] = v
				}
			}
		}
		raw, _ := json.Marshal(&cp)
		return raw
	}
	return string(strip(a)) == string(strip(b))
}

func replicas32(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func dReplicas(d *manifests.Deployment) int32 { return replicas32(d.Spec.Replicas) }

func rsReplicas(rs *manifests.ReplicaSet) int32 { return replicas32(rs.Spec.Replicas) }

// ResolveFenceposts returns maxSurge and maxUnavailable resolved against
// desired (surge rounded up, unavailability down); both being 0 makes
// maxUnavailable 1, so that a rollout can progress.
func ResolveFenceposts(maxSurge, maxUnavailable *manifests.IntOrString, desired int32) (int32, int32, error) {
	surge, err := manifests.ScaledValueFromIntOrPercent(maxSurge, int(desired), true)
	if err != nil {
		return 0, 0, err
	}
	unavailable, err := manifests.ScaledValueFromIntOrPercent(maxUnavailable, int(desired), false)
	if err != nil {
		return 0, 0, err
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return int32(surge), int32(unavailable), nil
}

func isRollingUpdate(d *manifests.Deployment) bool {
	return d.Spec.Strategy.Type != manifests.RecreateDeploymentStrategyType
}

func rollingParams(d *manifests.Deployment) (surge, unavailable *manifests.IntOrString) {
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		return ru.MaxSurge, ru.MaxUnavailable
	}
	s, u := manifests.FromString("25%"), manifests.FromString("25%")
	return &s, &u
}

// MaxUnavailable is how many of d's pods may be unavailable during a
// rolling update (0 for Recreate).
func MaxUnavailable(d *manifests.Deployment) int32 {
	if !isRollingUpdate(d) || dReplicas(d) == 0 {
		return 0
	}
	s, u := rollingParams(d)
	_, mu, _ := ResolveFenceposts(s, u, dReplicas(d))
	return min(mu, dReplicas(d))
}

// MaxSurge is how many pods above spec.replicas d may run during a
// rolling update (0 for Recreate).
func MaxSurge(d *manifests.Deployment) int32 {
	if !isRollingUpdate(d) {
		return 0
	}
	s, u := rollingParams(d)
	ms, _, _ := ResolveFenceposts(s, u, dReplicas(d))
	return ms
}

// Partition is the cap a fleet Rollout put on d's new ReplicaSet (its
// manifests.RolloutPartitionAnnotation, at most spec.replicas) during a
// RollingUpdate; ok is false when d is not partitioned. A value that is
// not a number holds every replica on the old template (0).
func Partition(d *manifests.Deployment) (n int32, ok bool) {
	v, ok := d.Annotations[manifests.RolloutPartitionAnnotation]
	if !ok || !isRollingUpdate(d) {
		return 0, false
	}
	p, err := strconv.ParseInt(v, 10, 32)
	if err != nil || p < 0 {
		return 0, true
	}
	return min(int32(p), dReplicas(d)), true
}

// newRSTarget is how many replicas d's new ReplicaSet is to have: all of
// them, or the partition.
func newRSTarget(d *manifests.Deployment) int32 {
	if p, ok := Partition(d); ok {
		return p
	}
	return dReplicas(d)
}

// oldRSFloor is how many replicas d's old ReplicaSets together keep at
// least: spec.replicas minus the partition (0 when not partitioned).
func oldRSFloor(d *manifests.Deployment) int32 {
	if p, ok := Partition(d); ok {
		return dReplicas(d) - p
	}
	return 0
}

// heldAtPartition reports whether d's new ReplicaSet reached a partition
// below spec.replicas: the rollout waits for the Rollout, not for pods.
func heldAtPartition(d *manifests.Deployment, newRS *manifests.ReplicaSet) bool {
	p, ok := Partition(d)
	return ok && p < dReplicas(d) && (newRS == nil && p == 0 || newRS != nil && rsReplicas(newRS) >= p)
}

// Revision returns the revision annotation of obj (0 when absent).
func Revision(obj manifests.Object) int64 {
	v, err := strconv.ParseInt(obj.GetObjectMeta().Annotations[manifests.RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// MaxRevision is the highest revision of rss.
func MaxRevision(rss []*manifests.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, Revision(rs))
	}
	return m
}

// sumReplicas adds up f over rss.
func sumReplicas(rss []*manifests.ReplicaSet, f func(*manifests.ReplicaSet) int32) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += f(rs)
		}
	}
	return n
}

func specReplicas(rs *manifests.ReplicaSet) int32      { return rsReplicas(rs) }
func statusReplicas(rs *manifests.ReplicaSet) int32    { return rs.Status.Replicas }
func readyReplicas(rs *manifests.ReplicaSet) int32     { return rs.Status.ReadyReplicas }
func availableReplicas(rs *manifests.ReplicaSet) int32 { return rs.Status.AvailableReplicas }

// filterActive returns the ReplicaSets with spec.replicas > 0.
func filterActive(rss []*manifests.ReplicaSet) []*manifests.ReplicaSet {
	var out []*manifests.ReplicaSet
	for _, rs := range rss {
		if rs != nil && rsReplicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// sortByCreation orders oldest first (name breaks ties).
func sortByCreation(rss []*manifests.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		a, b := rss[i], rss[j]
		if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
			return a.CreationTimestamp.Before(b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// sortBySizeNewer orders largest first, newer first among equals.
func sortBySizeNewer(rss []*manifests.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		a, b := rss[i], rss[j]
		if rsReplicas(a) != rsReplicas(b) {
			return rsReplicas(a) > rsReplicas(b)
		}
		if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
			return a.CreationTimestamp.After(b.CreationTimestamp)
		}
		return a.Name > b.Name
	})
}

// sortBySizeOlder orders largest first, older first among equals.
func sortBySizeOlder(rss []*manifests.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		a, b := rss[i], rss[j]
		if rsReplicas(a) != rsReplicas(b) {
			return rsReplicas(a) > rsReplicas(b)
		}
		if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
			return a.CreationTimestamp.Before(b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// ---- annotations ----

// annotationsToSkip are not copied from a Deployment to its ReplicaSets.
var annotationsToSkip = map[string]bool{
	"kubectl.kubernetes.io/last-applied-configuration": true,
	manifests.RevisionAnnotation:                       true,
	manifests.RevisionHistoryAnnotation:                true,
	manifests.DesiredReplicasAnnotation:                true,
	manifests.MaxReplicasAnnotation:                    true,
	manifests.RolloutPartitionAnnotation:               true,
}

// setNewReplicaSetAnnotations copies d's annotations to rs and raises
// rs's revision to newRevision. It reports whether rs changed.
func setNewReplicaSetAnnotations(d *manifests.Deployment, rs *manifests.ReplicaSet, newRevision int64) bool {
	changed := false
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	for k, v := range d.Annotations {
		if annotationsToSkip[k] || rs.Annotations[k] == v {
			continue
		}
		rs.Annotations[k] = v
		changed = true
	}
	if old := Revision(rs); old < newRevision {
		rs.Annotations[manifests.RevisionAnnotation] = strconv.FormatInt(newRevision, 10)
		changed = true
	}
	return changed
}

// setReplicasAnnotations records d's replicas and replicas+maxSurge on rs.
func setReplicasAnnotations(rs *manifests.ReplicaSet, desired, maxReplicas int32) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	changed := false
	for k, v := range map[string]string{
		manifests.DesiredReplicasAnnotation: strconv.Itoa(int(desired)),
		manifests.MaxReplicasAnnotation:     strconv.Itoa(int(maxReplicas)),
	} {
		if rs.Annotations[k] != v {
			rs.Annotations[k] = v
			changed = true
		}
	}
	return changed
}

func intAnnotation(rs *manifests.ReplicaSet, key string) (int32, bool) {
	v, ok := rs.Annotations[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(n), true
}

// ---- conditions ----

func getCondition(s *manifests.DeploymentStatus, typ string) *manifests.DeploymentCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == typ {
			return &s.Conditions[i]
		}
	}
	return nil
}

func newCondition(typ, status, reason, msg string, now time.Time) manifests.DeploymentCondition {
	now = now.UTC().Truncate(time.Second)
	return manifests.DeploymentCondition{Type: typ, Status: status, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now}
}

// setCondition sets c, keeping the transition time when the status does
// not change; an identical status and reason leave it untouched.
func setCondition(s *manifests.DeploymentStatus, c manifests.DeploymentCondition) {
	cur := getCondition(s, c.Type)
	if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason {
		return
	}
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeCondition(s, c.Type)
	s.Conditions = append(s.Conditions, c)
}

func removeCondition(s *manifests.DeploymentStatus, typ string) {
	out := s.Conditions[:0:0]
	for _, c := range s.Conditions {
		if c.Type != typ {
			out = append(out, c)
		}
	}
	s.Conditions = out
}

func hasProgressDeadline(d *manifests.Deployment) bool {
	return d.Spec.ProgressDeadlineSeconds != nil && *d.Spec.ProgressDeadlineSeconds != math.MaxInt32
}

// DeploymentComplete reports whether every replica is updated and
// available and the latest generation was observed.
func DeploymentComplete(d *manifests.Deployment, s *manifests.DeploymentStatus) bool {
	r := dReplicas(d)
	return s.UpdatedReplicas == r && s.Replicas == r && s.AvailableReplicas == r && s.ObservedGeneration >= d.Generation
}

// deploymentProgressing reports whether the new status shows progress
// over d's current one.
func deploymentProgressing(d *manifests.Deployment, s *manifests.DeploymentStatus) bool {
	old := d.Status
	oldOld := old.Replicas - old.UpdatedReplicas
	newOld := s.Replicas - s.UpdatedReplicas
	return s.UpdatedReplicas > old.UpdatedReplicas || newOld < oldOld ||
		s.ReadyReplicas > old.ReadyReplicas || s.AvailableReplicas > old.AvailableReplicas
}

// deploymentTimedOut reports whether the rollout made no progress for
// progressDeadlineSeconds.
func deploymentTimedOut(d *manifests.Deployment, s *manifests.DeploymentStatus, now time.Time) bool {
	if !hasProgressDeadline(d) {
		return false
	}
	c := getCondition(s, manifests.DeploymentProgressing)
	if c == nil {
		return false
	}
	switch c.Reason {
	case ReasonNewReplicaSetAvailable:
		return false
	case ReasonProgressDeadlineExceed:
		return true
	}
	deadline := time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second
	return c.LastUpdateTime.Add(deadline).Before(now)
}
