// Package statefulset is the StatefulSet controller: pods named
// <set>-<ordinal> with the host name <set>-<ordinal> and the subdomain
// spec.serviceName, created in ordinal order (OrderedReady: ordinal N only
// once 0..N-1 are running and ready) or all at once (Parallel), removed
// highest ordinal first, replaced by a rolling update in reverse ordinal
// order down to spec.updateStrategy.rollingUpdate.partition, or OnDelete.
// For every claim template and ordinal it creates the claim
// <template>-<set>-<ordinal> before the pod, and a pod that is deleted or
// fails is recreated with the same name and the same claims, so it finds
// its storage again (the claim binds it to its volume's node).
//
// Revisions are template hashes: the pod label controller-revision-hash
// and status.currentRevision/updateRevision hold <set>-<hash>, and a
// ControllerRevision of that name keeps each revision's template (up to
// revisionHistoryLimit old ones), so that a pod below the partition is
// recreated at the revision it had.
package statefulset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name, the source of its events.
const Name = "statefulset-controller"

// Event reasons (Kubernetes').
const (
	EventSuccessfulCreate = "SuccessfulCreate"
	EventSuccessfulDelete = "SuccessfulDelete"
	EventFailedCreate     = "FailedCreate"
	EventFailedDelete     = "FailedDelete"
	EventRecreatingPod    = "RecreatingFailedPod"
)

// deleteTimeout bounds how long a pod this controller deleted is assumed
// gone while the pod cache still shows it.
const deleteTimeout = time.Minute

// Store is what the controller needs of the object store.
type Store interface {
	Create(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error)
}

// Lister is a read-only cache of one resource.
type Lister interface {
	Get(key string) (manifests.Object, bool)
	List(sel manifests.Selector) []manifests.Object
}

// PodLister is the pods' cache, which also lists the pods of one
// controller without going over every pod.
type PodLister interface {
	Lister
	ListControlledBy(uid string) []manifests.Object
}

// Recorder records events.
type Recorder interface {
	Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error
}

// Controller reconciles StatefulSets.
type Controller struct {
	st     Store
	sets   Lister
	pods   PodLister
	claims Lister
	// revisions may be nil: pods below a partition are then rebuilt
	// from a sibling at the current revision.
	revisions Lister
	rec       Recorder
	queue     *controller.Queue
	now       func() time.Time

	mu sync.Mutex
	// Pods deleted by earlier syncs that the pod cache may still show,
	// by StatefulSet key and pod uid.
	deletes map[string]map[string]time.Time
}

// New returns a controller over the given caches (claims may be nil when
// no set uses claim templates). Register SetChanged, PodChanged and
// ClaimChanged as the caches' handlers.
func New(st Store, sets Lister, pods PodLister, claims, revisions Lister, rec Recorder) *Controller {
	return &Controller{
		st: st, sets: sets, pods: pods, claims: claims, revisions: revisions, rec: rec,
		queue:   controller.NewQueue(50*time.Millisecond, 30*time.Second),
		now:     time.Now,
		deletes: map[string]map[string]time.Time{},
	}
}

// SetClock replaces the clock (tests).
func (c *Controller) SetClock(now func() time.Time) { c.now = now }

// Run syncs with workers workers until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// SetChanged queues a changed StatefulSet.
func (c *Controller) SetChanged(old, cur manifests.Object) { c.queue.AddObject(old, cur) }

// PodChanged queues the StatefulSet controlling a changed pod.
func (c *Controller) PodChanged(old, cur manifests.Object) {
	c.queue.AddControllerOf("StatefulSet", old, cur)
}

// ClaimChanged queues the StatefulSets of the claim's namespace that have
// claim templates, when a claim is deleted (it is created again).
func (c *Controller) ClaimChanged(old, cur manifests.Object) {
	if cur != nil || old == nil {
		return
	}
	ns := old.GetObjectMeta().Namespace
	for _, o := range c.sets.List(manifests.Selector{}) {
		ss := o.(*manifests.StatefulSet)
		if ss.Namespace == ns && len(ss.Spec.VolumeClaimTemplates) > 0 {
			c.queue.Add(controller.Key(ss))
		}
	}
}

// TemplateHash is the hash of a template, the revision's suffix.
func TemplateHash(t *manifests.PodTemplateSpec) string {
	raw, _ := json.Marshal(t)
	h := fnv.New32a()
	h.Write(raw)
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}

// Revision is the name of the revision of ss's current template.
func Revision(ss *manifests.StatefulSet) string {
	return ss.Name + "-" + TemplateHash(&ss.Spec.Template)
}

// Ordinal returns the ordinal of ss's pod named name, or false when the
// name is not <set>-<ordinal>.
func Ordinal(ss *manifests.StatefulSet, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, ss.Name+"-")
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// NewPod returns ss's pod with ordinal made from ss's template, labelled
// with revision.
func NewPod(ss *manifests.StatefulSet, ordinal int, revision string) (*manifests.Pod, error) {
	return newPod(ss, &ss.Spec.Template, ordinal, revision)
}

// newPod returns ss's pod with ordinal made from template t.
func newPod(ss *manifests.StatefulSet, t *manifests.PodTemplateSpec, ordinal int, revision string) (*manifests.Pod, error) {
	ref, err := manifests.NewControllerRef(ss)
	if err != nil {
		return nil, err
	}
	spec := manifests.DeepCopy(&manifests.Pod{Spec: t.Spec}).(*manifests.Pod).Spec
	name := manifests.StatefulSetPodName(ss, ordinal)
	withTemplate := *ss
	withTemplate.Spec.Template = *t
	spec.Volumes = manifests.StatefulSetPodVolumes(&withTemplate, name)
	pod := &manifests.Pod{
		TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            name,
			Namespace:       ss.Namespace,
			Labels:          copyMap(t.Labels),
			Annotations:     copyMap(t.Annotations),
			OwnerReferences: []manifests.OwnerReference{ref},
		},
		Spec: spec,
	}
	setIdentity(ss, pod, ordinal, revision)
	manifests.Default(pod)
	pod.Status.Phase = manifests.PodPending
	return pod, nil
}

// podFromSibling rebuilds ss's pod with ordinal from sib, a pod of an
// older revision (a set keeps no copies of its older templates).
func podFromSibling(ss *manifests.StatefulSet, sib *manifests.Pod, ordinal int) *manifests.Pod {
	cp := manifests.DeepCopy(sib).(*manifests.Pod)
	name := manifests.StatefulSetPodName(ss, ordinal)
	templates := map[string]bool{}
	for _, t := range ss.Spec.VolumeClaimTemplates {
		templates[t.Name] = true
	}
	for i := range cp.Spec.Volumes {
		v := &cp.Spec.Volumes[i]
		if v.PersistentVolumeClaim != nil && templates[v.Name] {
			v.PersistentVolumeClaim.ClaimName = manifests.StatefulSetClaimName(v.Name, name)
		}
	}
	cp.Spec.NodeName = ""
	pod := &manifests.Pod{
		TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            name,
			Namespace:       ss.Namespace,
			Labels:          cp.Labels,
			Annotations:     cp.Annotations,
			OwnerReferences: cp.OwnerReferences,
		},
		Spec: cp.Spec,
	}
	setIdentity(ss, pod, ordinal, sib.Labels[manifests.ControllerRevisionHashLabel])
	pod.Status.Phase = manifests.PodPending
	return pod
}

// setIdentity gives pod its stable identity: labels, host name, subdomain.
func setIdentity(ss *manifests.StatefulSet, pod *manifests.Pod, ordinal int, revision string) {
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[manifests.StatefulSetPodNameLabel] = pod.Name
	pod.Labels[manifests.PodIndexLabel] = strconv.Itoa(ordinal)
	pod.Labels[manifests.ControllerRevisionHashLabel] = revision
	pod.Spec.Hostname = pod.Name
	pod.Spec.Subdomain = ss.Spec.ServiceName
}

// NewClaim returns the claim of template for ss's pod podName.
func NewClaim(ss *manifests.StatefulSet, template *manifests.PersistentVolumeClaim, podName string) (*manifests.PersistentVolumeClaim, error) {
	labels := copyMap(template.Labels)
	if ss.Spec.Selector != nil {
		for k, v := range ss.Spec.Selector.MatchLabels {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	claim := &manifests.PersistentVolumeClaim{
		TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: manifests.ObjectMeta{
			Name:        manifests.StatefulSetClaimName(template.Name, podName),
			Namespace:   ss.Namespace,
			Labels:      labels,
			Annotations: copyMap(template.Annotations),
		},
		Spec: manifests.DeepCopy(&manifests.PersistentVolumeClaim{Spec: template.Spec}).(*manifests.PersistentVolumeClaim).Spec,
	}
	if ref, ok, err := claimOwnerRef(ss); err != nil {
		return nil, err
	} else if ok {
		claim.OwnerReferences = []manifests.OwnerReference{ref}
	}
	manifests.Default(claim)
	return claim, nil
}

// claimOwnerRef returns the ownerReference a claim of ss carries when
// whenDeleted is Delete (so that the garbage collector deletes it with
// the set); ok is false under Retain.
func claimOwnerRef(ss *manifests.StatefulSet) (manifests.OwnerReference, bool, error) {
	p := ss.Spec.PersistentVolumeClaimRetentionPolicy
	if p == nil || p.WhenDeleted != manifests.DeletePersistentVolumeClaimRetentionPolicyType {
		return manifests.OwnerReference{}, false, nil
	}
	ref, err := manifests.NewControllerRef(ss)
	if err != nil {
		return ref, false, err
	}
	ref.Controller, ref.BlockOwnerDeletion = nil, nil
	return ref, true, nil
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// isAvailable reports whether pod is running, ready, and has been ready
// for minReadySeconds.
func isAvailable(pod *manifests.Pod, minReadySeconds int32, now time.Time) bool {
	return pod.Status.Phase == manifests.PodRunning && manifests.IsPodAvailable(pod, minReadySeconds, now)
}

func isFinished(pod *manifests.Pod) bool {
	return pod.Status.Phase == manifests.PodFailed || pod.Status.Phase == manifests.PodSucceeded
}

// Sync reconciles the StatefulSet under key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	o, ok := c.sets.Get(key)
	if !ok {
		c.forget(key)
		return nil
	}
	ss := o.(*manifests.StatefulSet)
	if ss.DeletionTimestamp != nil {
		return nil
	}
	now := c.now()
	minReady := ss.Spec.MinReadySeconds
	updateRev := Revision(ss)
	currentRev := ss.Status.CurrentRevision
	if currentRev == "" {
		currentRev = updateRev
	}
	replicas := 1
	if ss.Spec.Replicas != nil {
		replicas = int(*ss.Spec.Replicas)
	}
	start := manifests.StatefulSetStartOrdinal(ss)
	monotonic := ss.Spec.PodManagementPolicy != manifests.ParallelPodManagement

	// The pods: one slot per wanted ordinal, the rest condemned.
	owned, pendingDeletes := c.ownedPods(key, ss, now)
	slots := make([]*manifests.Pod, replicas)
	var condemned []*manifests.Pod
	condemnedOrd := map[*manifests.Pod]int{}
	for _, p := range owned {
		ord, ok := Ordinal(ss, p.Name)
		if ok && ord >= start && ord < start+replicas && slots[ord-start] == nil {
			slots[ord-start] = p
			continue
		}
		if !ok {
			ord = -1
		}
		condemnedOrd[p] = ord
		condemned = append(condemned, p)
	}
	sort.SliceStable(condemned, func(i, j int) bool { return condemnedOrd[condemned[i]] > condemnedOrd[condemned[j]] })

	var errs []error
	revs := c.setRevisions(ss)
	if err := c.ensureRevision(ctx, ss, updateRev, revs); err != nil {
		errs = append(errs, err)
	}
	gone := map[*manifests.Pod]bool{} // deleted by this sync
	// wait is set once an OrderedReady set must wait for a pod.
	wait := monotonic && pendingDeletes > 0

	// Create missing pods (and their claims), replace finished ones.
	for i := 0; i < replicas && !wait; i++ {
		ord := start + i
		p := slots[i]
		if p != nil && isFinished(p) {
			c.event(ctx, ss, manifests.EventWarning, EventRecreatingPod, "StatefulSet %s/%s is recreating %s Pod %s", ss.Namespace, ss.Name, p.Status.Phase, p.Name)
			if err := c.deletePod(ctx, key, ss, p); err != nil {
				errs = append(errs, err)
				wait = monotonic
				continue
			}
			slots[i] = nil
			p = nil
		}
		if p == nil {
			if err := c.ensureClaims(ctx, ss, manifests.StatefulSetPodName(ss, ord)); err != nil {
				errs = append(errs, err)
				wait = monotonic
				continue
			}
			pod, err := c.versionedPod(ss, slots, ord, currentRev, updateRev)
			if err == nil {
				err = c.createPod(ctx, ss, pod)
			}
			if err != nil {
				errs = append(errs, err)
			}
			wait = monotonic
			continue
		}
		if err := c.ensureClaims(ctx, ss, p.Name); err != nil {
			errs = append(errs, err)
		}
		if monotonic && !isAvailable(p, minReady, now) {
			wait = true
		}
	}

	// Remove condemned pods, highest ordinal first; OrderedReady removes
	// one at a time, once every wanted pod is available and the last
	// one removed is gone.
	for _, p := range condemned {
		if wait {
			break
		}
		if err := c.deletePod(ctx, key, ss, p); err != nil {
			errs = append(errs, err)
		} else {
			gone[p] = true
		}
		wait = monotonic
	}
	if len(condemned) == 0 && pendingDeletes == 0 {
		if err := c.deleteScaledClaims(ctx, ss, start, replicas); err != nil {
			errs = append(errs, err)
		}
	}

	// Rolling update: replace pods not at the update revision, highest
	// ordinal first, down to the partition, keeping at most
	// maxUnavailable wanted pods unavailable.
	if !wait && len(condemned) == 0 && ss.Spec.UpdateStrategy.Type != manifests.OnDeleteStatefulSetStrategyType {
		partition := 0
		maxUnavailable := 1
		if ru := ss.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			if ru.Partition != nil {
				partition = int(*ru.Partition)
			}
			if ru.MaxUnavailable != nil {
				n, err := manifests.ScaledValueFromIntOrPercent(ru.MaxUnavailable, replicas, true)
				if err != nil {
					errs = append(errs, fmt.Errorf("statefulset %s: maxUnavailable: %w", key, err))
				} else {
					maxUnavailable = max(n, 1)
				}
			}
		}
		unavailable := 0
		for _, p := range slots {
			if p == nil || !isAvailable(p, minReady, now) {
				unavailable++
			}
		}
		for i := replicas - 1; i >= partition; i-- {
			p := slots[i]
			if p == nil || p.Labels[manifests.ControllerRevisionHashLabel] == updateRev {
				continue
			}
			if isAvailable(p, minReady, now) {
				if unavailable >= maxUnavailable {
					break
				}
				unavailable++
			}
			if err := c.deletePod(ctx, key, ss, p); err != nil {
				errs = append(errs, err)
			} else {
				gone[p] = true
			}
		}
	}

	st := status(ss, slots, condemned, gone, currentRev, updateRev, now)
	if err := c.updateStatus(ctx, ss, st); err != nil {
		errs = append(errs, err)
	}
	live := map[string]bool{st.CurrentRevision: true, updateRev: true, currentRev: true}
	for _, p := range owned {
		live[p.Labels[manifests.ControllerRevisionHashLabel]] = true
	}
	if err := c.pruneRevisions(ctx, ss, revs, live); err != nil {
		errs = append(errs, err)
	}
	if minReady > 0 {
		for _, p := range slots {
			if p != nil && manifests.IsPodReady(p) && !isAvailable(p, minReady, now) {
				c.queue.AddAfter(key, time.Duration(minReady)*time.Second)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// versionedPod returns the pod to create for ordinal: at the current
// revision below the partition of a rolling update, else at the update
// revision.
func (c *Controller) versionedPod(ss *manifests.StatefulSet, slots []*manifests.Pod, ordinal int, currentRev, updateRev string) (*manifests.Pod, error) {
	if currentRev != updateRev && ss.Spec.UpdateStrategy.Type != manifests.OnDeleteStatefulSetStrategyType {
		partition := 0
		if ru := ss.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			partition = int(*ru.Partition)
		}
		if ordinal < manifests.StatefulSetStartOrdinal(ss)+partition {
			if t, ok := c.revisionTemplate(ss, currentRev); ok {
				return newPod(ss, t, ordinal, currentRev)
			}
			for _, p := range slots {
				if p != nil && p.Labels[manifests.ControllerRevisionHashLabel] == currentRev {
					return podFromSibling(ss, p, ordinal), nil
				}
			}
		}
	}
	pod, err := NewPod(ss, ordinal, updateRev)
	if err != nil {
		return nil, fmt.Errorf("statefulset %s: pod %d: %w", ss.Name, ordinal, err)
	}
	return pod, nil
}

// status computes the observed state from the pods.
func status(ss *manifests.StatefulSet, slots, condemned []*manifests.Pod, gone map[*manifests.Pod]bool, currentRev, updateRev string, now time.Time) manifests.StatefulSetStatus {
	st := manifests.StatefulSetStatus{
		ObservedGeneration: ss.Generation,
		CurrentRevision:    currentRev,
		UpdateRevision:     updateRev,
		CollisionCount:     ss.Status.CollisionCount,
		Conditions:         ss.Status.Conditions,
	}
	count := func(p *manifests.Pod) {
		if p == nil || gone[p] {
			return
		}
		st.Replicas++
		if manifests.IsPodReady(p) {
			st.ReadyReplicas++
		}
		if isAvailable(p, ss.Spec.MinReadySeconds, now) {
			st.AvailableReplicas++
		}
		if p.Labels[manifests.ControllerRevisionHashLabel] == currentRev {
			st.CurrentReplicas++
		}
		if p.Labels[manifests.ControllerRevisionHashLabel] == updateRev {
			st.UpdatedReplicas++
		}
	}
	for _, p := range slots {
		count(p)
	}
	for _, p := range condemned {
		count(p)
	}
	// The update is complete once every wanted pod is at the update
	// revision and ready: the update revision becomes the current one.
	want := int32(len(slots))
	if st.UpdatedReplicas == want && st.Replicas == want && st.ReadyReplicas == want {
		st.CurrentRevision = updateRev
		st.CurrentReplicas = st.UpdatedReplicas
	}
	return st
}

// ownedPods returns the pods ss controls, leaving out those this
// controller deleted that the cache still shows; pending counts these.
func (c *Controller) ownedPods(key string, ss *manifests.StatefulSet, now time.Time) (out []*manifests.Pod, pending int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	deleted := c.deletes[key]
	seen := map[string]bool{}
	for _, o := range c.pods.ListControlledBy(ss.UID) {
		p := o.(*manifests.Pod)
		if p.Namespace != ss.Namespace {
			continue
		}
		ref := manifests.GetControllerOf(p)
		if ref == nil || ref.UID != ss.UID || p.DeletionTimestamp != nil {
			continue
		}
		if at, ok := deleted[p.UID]; ok && now.Sub(at) < deleteTimeout {
			seen[p.UID] = true
			pending++
			continue
		}
		out = append(out, p)
	}
	for uid := range deleted {
		if !seen[uid] {
			delete(deleted, uid)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, pending
}

func (c *Controller) forget(key string) {
	c.mu.Lock()
	delete(c.deletes, key)
	c.mu.Unlock()
}

func (c *Controller) createPod(ctx context.Context, ss *manifests.StatefulSet, pod *manifests.Pod) error {
	if o, ok := c.pods.Get(pod.Namespace + "/" + pod.Name); ok {
		if ref := manifests.GetControllerOf(o); ref == nil || ref.UID != ss.UID {
			c.event(ctx, ss, manifests.EventWarning, EventFailedCreate, "create Pod %s in StatefulSet %s failed error: a pod of that name exists and is not the set's", pod.Name, ss.Name)
			return fmt.Errorf("create pod %s of statefulset %s: a pod of that name exists and is not the set's", pod.Name, ss.Name)
		}
	}
	_, err := c.st.Create(ctx, pod)
	switch {
	case client.CodeOf(err) == client.CodeExists:
		// Created by an earlier sync; the cache does not show it yet.
		return nil
	case err != nil:
		c.event(ctx, ss, manifests.EventWarning, EventFailedCreate, "create Pod %s in StatefulSet %s failed error: %v", pod.Name, ss.Name, err)
		return fmt.Errorf("create pod %s of statefulset %s: %w", pod.Name, ss.Name, err)
	}
	c.event(ctx, ss, manifests.EventNormal, EventSuccessfulCreate, "create Pod %s in StatefulSet %s successful", pod.Name, ss.Name)
	return nil
}

// deletePod deletes pod if it is still the pod the cache shows (same
// revision), so that a pod recreated under the same name is never hit.
func (c *Controller) deletePod(ctx context.Context, key string, ss *manifests.StatefulSet, pod *manifests.Pod) error {
	rev, _ := strconv.ParseUint(pod.ResourceVersion, 10, 64)
	_, err := c.st.Delete(ctx, "pods", pod.Namespace, pod.Name, rev)
	switch {
	case client.IsConflict(err):
		return fmt.Errorf("delete pod %s of statefulset %s: changed since read: %w", pod.Name, ss.Name, controller.ErrRetry)
	case err != nil && !client.IsNotFound(err):
		c.event(ctx, ss, manifests.EventWarning, EventFailedDelete, "delete Pod %s in StatefulSet %s failed error: %v", pod.Name, ss.Name, err)
		return fmt.Errorf("delete pod %s of statefulset %s: %w", pod.Name, ss.Name, err)
	}
	c.mu.Lock()
	if c.deletes[key] == nil {
		c.deletes[key] = map[string]time.Time{}
	}
	c.deletes[key][pod.UID] = c.now()
	c.mu.Unlock()
	if err == nil {
		c.event(ctx, ss, manifests.EventNormal, EventSuccessfulDelete, "delete Pod %s in StatefulSet %s successful", pod.Name, ss.Name)
	}
	return nil
}

// ensureClaims creates the missing claims of podName and keeps their
// ownerReference to ss in line with whenDeleted.
func (c *Controller) ensureClaims(ctx context.Context, ss *manifests.StatefulSet, podName string) error {
	if len(ss.Spec.VolumeClaimTemplates) == 0 {
		return nil
	}
	if c.claims == nil {
		return fmt.Errorf("statefulset %s: claim templates need the PersistentVolumeClaim cache", ss.Name)
	}
	var errs []error
	for i := range ss.Spec.VolumeClaimTemplates {
		t := &ss.Spec.VolumeClaimTemplates[i]
		name := manifests.StatefulSetClaimName(t.Name, podName)
		if o, ok := c.claims.Get(ss.Namespace + "/" + name); ok {
			if err := c.fixClaimOwner(ctx, ss, o.(*manifests.PersistentVolumeClaim)); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		claim, err := NewClaim(ss, t, podName)
		if err != nil {
			return err
		}
		_, err = c.st.Create(ctx, claim)
		switch {
		case client.CodeOf(err) == client.CodeExists:
		case err != nil:
			c.event(ctx, ss, manifests.EventWarning, EventFailedCreate, "create Claim %s for Pod %s in StatefulSet %s failed error: %v", name, podName, ss.Name, err)
			errs = append(errs, fmt.Errorf("create claim %s of statefulset %s: %w", name, ss.Name, err))
		default:
			c.event(ctx, ss, manifests.EventNormal, EventSuccessfulCreate, "create Claim %s Pod %s in StatefulSet %s success", name, podName, ss.Name)
		}
	}
	return errors.Join(errs...)
}

// fixClaimOwner adds or removes claim's ownerReference to ss as
// whenDeleted asks.
func (c *Controller) fixClaimOwner(ctx context.Context, ss *manifests.StatefulSet, claim *manifests.PersistentVolumeClaim) error {
	ref, want, err := claimOwnerRef(ss)
	if err != nil {
		return err
	}
	has := false
	var others []manifests.OwnerReference
	for _, r := range claim.OwnerReferences {
		if r.UID == ss.UID {
			has = true
			continue
		}
		others = append(others, r)
	}
	if has == want {
		return nil
	}
	cp := manifests.DeepCopy(claim).(*manifests.PersistentVolumeClaim)
	cp.OwnerReferences = others
	if want {
		cp.OwnerReferences = append(cp.OwnerReferences, ref)
	}
	if _, err := c.st.Update(ctx, cp); err != nil && !client.IsNotFound(err) {
		if client.IsConflict(err) {
			return fmt.Errorf("update owner of claim %s: %w", claim.Name, controller.ErrRetry)
		}
		return fmt.Errorf("update owner of claim %s: %w", claim.Name, err)
	}
	return nil
}

// deleteScaledClaims deletes, under whenScaled Delete, the claims of
// ordinals outside [start, start+replicas) whose pods are gone.
func (c *Controller) deleteScaledClaims(ctx context.Context, ss *manifests.StatefulSet, start, replicas int) error {
	p := ss.Spec.PersistentVolumeClaimRetentionPolicy
	if c.claims == nil || len(ss.Spec.VolumeClaimTemplates) == 0 || p == nil || p.WhenScaled != manifests.DeletePersistentVolumeClaimRetentionPolicyType {
		return nil
	}
	var errs []error
	for _, o := range c.claims.List(manifests.Selector{}) {
		claim := o.(*manifests.PersistentVolumeClaim)
		if claim.Namespace != ss.Namespace {
			continue
		}
		for _, t := range ss.Spec.VolumeClaimTemplates {
			podName, ok := strings.CutPrefix(claim.Name, t.Name+"-")
			if !ok {
				continue
			}
			ord, ok := Ordinal(ss, podName)
			if !ok || (ord >= start && ord < start+replicas) {
				continue
			}
			if !selectedBy(ss, claim) {
				continue
			}
			_, err := c.st.Delete(ctx, "persistentvolumeclaims", claim.Namespace, claim.Name, 0)
			if err != nil && !client.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete claim %s of statefulset %s: %w", claim.Name, ss.Name, err))
				continue
			}
			if err == nil {
				c.event(ctx, ss, manifests.EventNormal, EventSuccessfulDelete, "delete Claim %s in StatefulSet %s successful", claim.Name, ss.Name)
			}
			break
		}
	}
	return errors.Join(errs...)
}

// selectedBy reports whether claim carries ss's selector labels (as the
// claims this controller creates do).
func selectedBy(ss *manifests.StatefulSet, claim *manifests.PersistentVolumeClaim) bool {
	if ss.Spec.Selector == nil {
		return false
	}
	for k, v := range ss.Spec.Selector.MatchLabels {
		if claim.Labels[k] != v {
			return false
		}
	}
	return true
}

// updateStatus writes st unless the StatefulSet already has it.
func (c *Controller) updateStatus(ctx context.Context, ss *manifests.StatefulSet, st manifests.StatefulSetStatus) error {
	if manifests.EqualJSON(st, ss.Status) {
		return nil
	}
	cp := manifests.DeepCopy(ss).(*manifests.StatefulSet)
	cp.Status = st
	_, err := c.st.Update(ctx, cp)
	return controller.StatusWriteError("statefulset "+ss.Name, err)
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	if err := c.rec.Eventf(ctx, obj, typ, reason, format, args...); err != nil {
		slog.WarnContext(ctx, "record event", "reason", reason, "err", err)
	}
}
