// Package volume is the PersistentVolume binder and local-path
// provisioner: it binds claims to static volumes (by class, size and access
// modes), provisions a directory volume on the node of a claim's first
// consumer (WaitForFirstConsumer, the built-in class local-path), releases
// and reclaims volumes when their claims go, and keeps a claim used by a
// pod from being deleted (kubernetes.io/pvc-protection). The agents do the
// rest: they create, mount and remove the directories (docs/storage.md).
package volume

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name, the source of its events.
const Name = "persistentvolume-controller"

// Event reasons (Kubernetes' where it has them).
const (
	EventWaitForFirstConsumer  = "WaitForFirstConsumer"
	EventProvisioningSucceeded = "ProvisioningSucceeded"
	EventFailedBinding         = "FailedBinding"
	EventClaimLost             = "ClaimLost"
	EventVolumeReleased        = "VolumeReleased"
	EventVolumeDeleted         = "VolumeDeleted"
)

// DataDirPath is the nominal directory a provisioned volume gets in its
// local.path: the data directory of the packaged agent. The agent uses
// <its --data-dir>/volumes/<volume name> for every volume provisioned by
// manifests.LocalPathProvisioner, whatever its data directory.
const DataDirPath = "/var/lib/edge-agent/volumes"

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

// Recorder records events.
type Recorder interface {
	Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error
}

// Listers are the caches the controller reads.
type Listers struct {
	Pods, Nodes, Claims, Volumes, Classes Lister
}

// Controller binds, provisions and reclaims volumes.
type Controller struct {
	st    Store
	l     Listers
	rec   Recorder
	queue *controller.Queue
	now   func() time.Time
}

// Queue keys: "pvc/<namespace>/<name>" and "pv/<name>".
const (
	claimPrefix  = "pvc/"
	volumePrefix = "pv/"
)

// New returns a controller over the given caches. Register ClaimChanged,
// VolumeChanged, PodChanged and ClassChanged as their handlers.
func New(st Store, l Listers, rec Recorder) *Controller {
	return &Controller{st: st, l: l, rec: rec, now: time.Now,
		queue: controller.NewQueue(50*time.Millisecond, 30*time.Second)}
}

// Run syncs with one worker (bindings are decided one at a time) until
// ctx is done.
func (c *Controller) Run(ctx context.Context) {
	controller.RunNamedWorkers(ctx, Name, c.queue, 1, c.Sync)
}

// ClaimChanged queues a changed claim, and the volumes of a deleted one.
func (c *Controller) ClaimChanged(old, cur manifests.Object) {
	if cur != nil {
		c.queue.Add(claimPrefix + controller.Key(cur))
		return
	}
	oc, ok := old.(*manifests.PersistentVolumeClaim)
	if !ok {
		return
	}
	for _, o := range c.l.Volumes.List(manifests.Selector{}) {
		pv := o.(*manifests.PersistentVolume)
		if r := pv.Spec.ClaimRef; r != nil && r.Namespace == oc.Namespace && r.Name == oc.Name {
			c.queue.Add(volumePrefix + pv.Name)
		}
	}
}

// VolumeChanged queues a changed volume and the claim it names.
func (c *Controller) VolumeChanged(old, cur manifests.Object) {
	for _, o := range []manifests.Object{old, cur} {
		pv, ok := o.(*manifests.PersistentVolume)
		if !ok {
			continue
		}
		if o == cur {
			c.queue.Add(volumePrefix + pv.Name)
		}
		if r := pv.Spec.ClaimRef; r != nil {
			c.queue.Add(claimPrefix + r.Namespace + "/" + r.Name)
		}
	}
	if cur == nil || old == nil {
		c.queuePendingClaims() // a new volume may fit a waiting claim
	}
}

// PodChanged queues the claims a changed pod uses (its binding may let a
// WaitForFirstConsumer claim bind; its end may let a claim go).
func (c *Controller) PodChanged(old, cur manifests.Object) {
	for _, o := range []manifests.Object{old, cur} {
		p, ok := o.(*manifests.Pod)
		if !ok {
			continue
		}
		for _, name := range manifests.PodClaimNames(p) {
			c.queue.Add(claimPrefix + p.Namespace + "/" + name)
		}
	}
}

// ClassChanged queues the claims still waiting.
func (c *Controller) ClassChanged(_, _ manifests.Object) { c.queuePendingClaims() }

func (c *Controller) queuePendingClaims() {
	for _, o := range c.l.Claims.List(manifests.Selector{}) {
		if pvc := o.(*manifests.PersistentVolumeClaim); pvc.Spec.VolumeName == "" {
			c.queue.Add(claimPrefix + controller.Key(pvc))
		}
	}
}

// Sync handles one queue key. A conflict (the cache was behind the
// store) is retried quietly.
func (c *Controller) Sync(ctx context.Context, key string) error {
	var err error
	switch {
	case strings.HasPrefix(key, claimPrefix):
		err = c.syncClaim(ctx, strings.TrimPrefix(key, claimPrefix))
	case strings.HasPrefix(key, volumePrefix):
		err = c.syncVolume(ctx, strings.TrimPrefix(key, volumePrefix))
	}
	if client.IsConflict(err) || client.CodeOf(err) == client.CodeExists {
		return fmt.Errorf("%w: %w", controller.ErrRetry, err)
	}
	return err
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, typ, reason, format string, args ...any) {
	if c.rec != nil {
		_ = c.rec.Eventf(ctx, obj, typ, reason, format, args...)
	}
}

// users returns the pods (not ended) in claim's namespace that use it.
func (c *Controller) users(pvc *manifests.PersistentVolumeClaim) []*manifests.Pod {
	var out []*manifests.Pod
	for _, o := range c.l.Pods.List(manifests.Selector{}) {
		p := o.(*manifests.Pod)
		if p.Namespace != pvc.Namespace || p.Status.Phase == manifests.PodSucceeded || p.Status.Phase == manifests.PodFailed {
			continue
		}
		if slices.Contains(manifests.PodClaimNames(p), pvc.Name) {
			out = append(out, p)
		}
	}
	return out
}

func (c *Controller) class(name string) manifests.ClassParams {
	var sc *manifests.StorageClass
	if name != "" {
		if o, ok := c.l.Classes.Get(name); ok {
			sc = o.(*manifests.StorageClass)
		}
	}
	return manifests.StorageClassParams(name, sc)
}

func (c *Controller) syncClaim(ctx context.Context, key string) error {
	o, ok := c.l.Claims.Get(key)
	if !ok {
		return nil
	}
	pvc := o.(*manifests.PersistentVolumeClaim)
	users := c.users(pvc)
	if pvc.DeletionTimestamp != nil {
		if len(users) > 0 || !slices.Contains(pvc.Finalizers, manifests.PVCProtectionFinalizer) {
			return nil // requeued when its last user goes
		}
		return controller.RemoveFinalizer(ctx, c.st, "persistentvolumeclaims", pvc, manifests.PVCProtectionFinalizer)
	}
	if !slices.Contains(pvc.Finalizers, manifests.PVCProtectionFinalizer) {
		cp := manifests.DeepCopy(pvc).(*manifests.PersistentVolumeClaim)
		cp.Finalizers = append(cp.Finalizers, manifests.PVCProtectionFinalizer)
		_, err := c.st.Update(ctx, cp)
		return err // the update queues the claim again
	}
	if pvc.Spec.VolumeName != "" {
		return c.syncBoundClaim(ctx, pvc)
	}
	// A volume reserved for this claim (claimRef) binds first: it may be
	// one this controller provisioned before it could bind the claim.
	for _, vo := range c.l.Volumes.List(manifests.Selector{}) {
		pv := vo.(*manifests.PersistentVolume)
		if r := pv.Spec.ClaimRef; r != nil && r.Namespace == pvc.Namespace && r.Name == pvc.Name && (r.UID == "" || r.UID == pvc.UID) && pv.DeletionTimestamp == nil {
			return c.bind(ctx, pvc, pv, "")
		}
	}
	cls := c.class(manifests.ClaimStorageClass(pvc))
	if cls.BindingMode == manifests.VolumeBindingWaitForFirstConsumer {
		node := ""
		for _, p := range users {
			if p.Spec.NodeName != "" {
				node = p.Spec.NodeName
				break
			}
		}
		if node == "" {
			c.pendingEvent(ctx, pvc, manifests.EventNormal, EventWaitForFirstConsumer, "waiting for first consumer to be created before binding")
			return nil
		}
		labels := map[string]string{"kubernetes.io/hostname": node}
		if no, ok := c.l.Nodes.Get(node); ok {
			labels = no.(*manifests.Node).Labels
		}
		if pv := c.bestVolume(pvc, func(pv *manifests.PersistentVolume) bool { return manifests.VolumeReachableFrom(pv, labels) }); pv != nil {
			return c.bind(ctx, pvc, pv, node)
		}
		if !cls.Provisions() {
			c.pendingEvent(ctx, pvc, manifests.EventWarning, EventFailedBinding, "no persistent volumes available for this claim on node %s and storage class %q does not provision", node, cls.Name)
			return nil
		}
		pv, err := c.provision(ctx, pvc, cls, node)
		if err != nil {
			return err
		}
		return c.bind(ctx, pvc, pv, node)
	}
	if pv := c.bestVolume(pvc, func(*manifests.PersistentVolume) bool { return true }); pv != nil {
		return c.bind(ctx, pvc, pv, "")
	}
	if cls.Provisions() {
		c.pendingEvent(ctx, pvc, manifests.EventWarning, EventFailedBinding, "storage class %q binds Immediate: local volumes need a node, use volumeBindingMode WaitForFirstConsumer to provision", cls.Name)
	} else {
		c.pendingEvent(ctx, pvc, manifests.EventNormal, EventFailedBinding, "no persistent volumes available for this claim and no storage class is set to provision")
	}
	return nil
}

// pendingEvent records why a claim waits, once per claim and reason (the
// claim is synced again on every pod and volume change).
func (c *Controller) pendingEvent(ctx context.Context, pvc *manifests.PersistentVolumeClaim, typ, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if pvc.Annotations["edge.io/pending-reason"] == msg {
		return
	}
	cp := manifests.DeepCopy(pvc).(*manifests.PersistentVolumeClaim)
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	cp.Annotations["edge.io/pending-reason"] = msg
	cp.Status.Phase = manifests.ClaimPending
	if _, err := c.st.Update(ctx, cp); err != nil {
		return // the next sync tries again
	}
	c.event(ctx, pvc, typ, reason, "%s", msg)
}

// bestVolume is the smallest unbound volume that fits pvc and ok, ties
// broken by name.
func (c *Controller) bestVolume(pvc *manifests.PersistentVolumeClaim, ok func(*manifests.PersistentVolume) bool) *manifests.PersistentVolume {
	var best *manifests.PersistentVolume
	for _, o := range c.l.Volumes.List(manifests.Selector{}) {
		pv := o.(*manifests.PersistentVolume)
		if pv.Spec.ClaimRef != nil || !manifests.VolumeFitsClaim(pv, pvc) || !ok(pv) {
			continue
		}
		if best == nil {
			best = pv
			continue
		}
		a, b := pv.Spec.Capacity[manifests.ResourceStorage], best.Spec.Capacity[manifests.ResourceStorage]
		if d := a.Cmp(b); d < 0 || (d == 0 && pv.Name < best.Name) {
			best = pv
		}
	}
	return best
}

// provision creates the volume pvc-<claim uid> on node, reserved for pvc.
func (c *Controller) provision(ctx context.Context, pvc *manifests.PersistentVolumeClaim, cls manifests.ClassParams, node string) (*manifests.PersistentVolume, error) {
	name := "pvc-" + pvc.UID
	if o, ok := c.l.Volumes.Get(name); ok {
		return o.(*manifests.PersistentVolume), nil
	}
	pv := &manifests.PersistentVolume{
		ObjectMeta: manifests.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{manifests.AnnProvisionedBy: manifests.LocalPathProvisioner},
			Labels:      map[string]string{"kubernetes.io/hostname": node},
		},
		Spec: manifests.PersistentVolumeSpec{
			Capacity:                      manifests.ResourceList{manifests.ResourceStorage: manifests.ClaimRequest(pvc)},
			AccessModes:                   slices.Clone(pvc.Spec.AccessModes),
			PersistentVolumeReclaimPolicy: cls.ReclaimPolicy,
			StorageClassName:              cls.Name,
			VolumeMode:                    manifests.VolumeModeFilesystem,
			ClaimRef:                      claimRef(pvc),
			NodeAffinity: &manifests.VolumeNodeAffinity{Required: &manifests.NodeSelector{NodeSelectorTerms: []manifests.NodeSelectorTerm{{
				MatchExpressions: []manifests.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{node}}},
			}}}},
			Local: &manifests.LocalVolumeSource{Path: DataDirPath + "/" + name},
		},
		Status: manifests.PersistentVolumeStatus{Phase: manifests.VolumeBound},
	}
	if cls.ReclaimPolicy == manifests.ReclaimDelete {
		pv.Finalizers = []string{manifests.LocalVolumeCleanupFinalizer}
	}
	created, err := c.st.Create(ctx, pv)
	if err != nil {
		return nil, fmt.Errorf("provision volume %s for claim %s/%s: %w", name, pvc.Namespace, pvc.Name, err)
	}
	c.event(ctx, pvc, manifests.EventNormal, EventProvisioningSucceeded, "Successfully provisioned volume %s on node %s", name, node)
	return created.(*manifests.PersistentVolume), nil
}

func claimRef(pvc *manifests.PersistentVolumeClaim) *manifests.ObjectReference {
	return &manifests.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID}
}

// bind reserves pv for pvc (claimRef, phase Bound), then binds pvc to it
// (spec.volumeName, phase Bound, capacity and access modes). A failure
// between the two writes is finished by the next sync: the claim finds the
// volume reserved for it.
func (c *Controller) bind(ctx context.Context, pvc *manifests.PersistentVolumeClaim, pv *manifests.PersistentVolume, node string) error {
	if r := pv.Spec.ClaimRef; r == nil || r.UID != pvc.UID || pv.Status.Phase != manifests.VolumeBound {
		cp := manifests.DeepCopy(pv).(*manifests.PersistentVolume)
		cp.Spec.ClaimRef = claimRef(pvc)
		cp.Status.Phase, cp.Status.Reason, cp.Status.Message = manifests.VolumeBound, "", ""
		got, err := c.st.Update(ctx, cp)
		if err != nil {
			return fmt.Errorf("bind volume %s to claim %s/%s: %w", pv.Name, pvc.Namespace, pvc.Name, err)
		}
		pv = got.(*manifests.PersistentVolume)
	}
	cp := manifests.DeepCopy(pvc).(*manifests.PersistentVolumeClaim)
	cp.Spec.VolumeName = pv.Name
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	delete(cp.Annotations, "edge.io/pending-reason")
	cp.Annotations[manifests.AnnBindCompleted] = "yes"
	if node != "" {
		cp.Annotations[manifests.AnnSelectedNode] = node
	}
	setClaimBound(cp, pv)
	if _, err := c.st.Update(ctx, cp); err != nil {
		return fmt.Errorf("bind claim %s/%s to volume %s: %w", pvc.Namespace, pvc.Name, pv.Name, err)
	}
	return nil
}

func setClaimBound(pvc *manifests.PersistentVolumeClaim, pv *manifests.PersistentVolume) {
	pvc.Status.Phase = manifests.ClaimBound
	pvc.Status.AccessModes = slices.Clone(pv.Spec.AccessModes)
	pvc.Status.Capacity = manifests.ResourceList{manifests.ResourceStorage: pv.Spec.Capacity[manifests.ResourceStorage]}
}

// syncBoundClaim keeps a bound claim's status right, or marks it Lost when
// its volume is gone or bound elsewhere.
func (c *Controller) syncBoundClaim(ctx context.Context, pvc *manifests.PersistentVolumeClaim) error {
	o, ok := c.l.Volumes.Get(pvc.Spec.VolumeName)
	var pv *manifests.PersistentVolume
	if ok {
		pv = o.(*manifests.PersistentVolume)
	}
	if pv != nil && pv.Spec.ClaimRef == nil && pv.DeletionTimestamp == nil {
		// Pre-bound by the operator (spec.volumeName): reserve the volume.
		if !manifests.VolumeFitsClaim(pv, pvc) {
			c.pendingEvent(ctx, pvc, manifests.EventWarning, EventFailedBinding, "volume %q does not fit the claim (class, capacity or access modes)", pv.Name)
			return nil
		}
		return c.bind(ctx, pvc, pv, "")
	}
	if pv == nil || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Namespace != pvc.Namespace || pv.Spec.ClaimRef.Name != pvc.Name || (pv.Spec.ClaimRef.UID != "" && pv.Spec.ClaimRef.UID != pvc.UID) {
		if pvc.Status.Phase == manifests.ClaimBound {
			cp := manifests.DeepCopy(pvc).(*manifests.PersistentVolumeClaim)
			cp.Status.Phase = manifests.ClaimLost
			if _, err := c.st.Update(ctx, cp); err != nil {
				return err
			}
			c.event(ctx, pvc, manifests.EventWarning, EventClaimLost, "Bound claim has lost its PersistentVolume %s. Data on the volume is lost!", pvc.Spec.VolumeName)
			return nil
		}
		if pvc.Status.Phase != manifests.ClaimLost {
			c.pendingEvent(ctx, pvc, manifests.EventNormal, EventFailedBinding, "volume %q not found", pvc.Spec.VolumeName)
		}
		return nil
	}
	want := manifests.DeepCopy(pvc).(*manifests.PersistentVolumeClaim)
	setClaimBound(want, pv)
	if pv.Spec.ClaimRef.UID == "" || pv.Status.Phase != manifests.VolumeBound {
		return c.bind(ctx, pvc, pv, "")
	}
	if manifests.EqualJSON(want.Status, pvc.Status) {
		return nil
	}
	_, err := c.st.Update(ctx, want)
	return err
}

// syncVolume sets a volume's phase and reclaims it once its claim is gone.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	o, ok := c.l.Volumes.Get(name)
	if !ok {
		return nil
	}
	pv := o.(*manifests.PersistentVolume)
	if pv.DeletionTimestamp != nil {
		if len(pv.Finalizers) == 0 {
			// The agent removed the directory and the finalizer.
			return controller.DeleteAt(ctx, c.st, "persistentvolumes", pv)
		}
		return nil
	}
	r := pv.Spec.ClaimRef
	if r == nil {
		return c.setVolumePhase(ctx, pv, manifests.VolumeAvailable, "")
	}
	var pvc *manifests.PersistentVolumeClaim
	if co, ok := c.l.Claims.Get(r.Namespace + "/" + r.Name); ok {
		pvc = co.(*manifests.PersistentVolumeClaim)
	}
	if pvc != nil && (r.UID == "" || r.UID == pvc.UID) {
		if r.UID == "" {
			return c.setVolumePhase(ctx, pv, manifests.VolumeAvailable, "") // reserved, claim not bound yet
		}
		return c.setVolumePhase(ctx, pv, manifests.VolumeBound, "")
	}
	if r.UID == "" {
		return c.setVolumePhase(ctx, pv, manifests.VolumeAvailable, "") // reserved for a claim to come
	}
	// Its claim is gone.
	if pv.Status.Phase != manifests.VolumeReleased {
		if err := c.setVolumePhase(ctx, pv, manifests.VolumeReleased, fmt.Sprintf("claim %s/%s was deleted", r.Namespace, r.Name)); err != nil {
			return err
		}
		c.event(ctx, pv, manifests.EventNormal, EventVolumeReleased, "claim %s/%s was deleted; reclaim policy %s", r.Namespace, r.Name, pv.Spec.PersistentVolumeReclaimPolicy)
		return nil // the update queues it again
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != manifests.ReclaimDelete {
		return nil // Retain: kept Released, directory and all
	}
	if len(pv.Finalizers) == 0 {
		c.event(ctx, pv, manifests.EventNormal, EventVolumeDeleted, "reclaim policy Delete: volume deleted (its directory is kept: it was not provisioned)")
		return controller.DeleteAt(ctx, c.st, "persistentvolumes", pv)
	}
	// Mark it deleted: the agent of its node removes the directory and
	// the finalizer, then the volume goes.
	cp := manifests.DeepCopy(pv).(*manifests.PersistentVolume)
	t := c.now().UTC().Truncate(time.Second)
	cp.DeletionTimestamp = &t
	if _, err := c.st.Update(ctx, cp); err != nil {
		return fmt.Errorf("delete volume %s: %w", pv.Name, err)
	}
	c.event(ctx, pv, manifests.EventNormal, EventVolumeDeleted, "reclaim policy Delete: waiting for node %s to remove the directory", manifests.PVNodeName(pv))
	return nil
}

func (c *Controller) setVolumePhase(ctx context.Context, pv *manifests.PersistentVolume, phase, msg string) error {
	if pv.Status.Phase == phase && pv.Status.Message == msg {
		return nil
	}
	cp := manifests.DeepCopy(pv).(*manifests.PersistentVolume)
	cp.Status.Phase, cp.Status.Message = phase, msg
	if _, err := c.st.Update(ctx, cp); err != nil {
		return fmt.Errorf("set volume %s %s: %w", pv.Name, phase, err)
	}
	return nil
}
