package scheduler

import (
	"fmt"
	"sync"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// ReasonVolumeAffinity replaces ReasonAffinity for a pod whose volumes
// restrict its nodes: either may be why a node does not fit.
const ReasonVolumeAffinity = "node(s) didn't match Pod's node affinity/selector or had volume node affinity conflict"

// volumes resolves the PersistentVolumeClaims of pods (only pods with such
// volumes take this path). A claim bound to a local volume pins its pods
// to the volume's node; an unbound WaitForFirstConsumer claim follows the
// node chosen for its first pod, which the volume controller then
// provisions on.
type volumes struct {
	claims, pvs, classes Lister

	mu sync.Mutex
	// chosen is the node picked for each unbound claim (by uid) until the
	// claim is bound, so that its other pods go to the same node.
	chosen map[string]string
}

// SetVolumeListers makes the scheduler honour the PersistentVolumeClaims
// of pods, read from the given caches (claims by namespace/name, volumes
// and classes by name). Register VolumeChanged as their handler. Call it
// before Run.
func (c *Controller) SetVolumeListers(claims, pvs, classes Lister) {
	c.vols = &volumes{claims: claims, pvs: pvs, classes: classes, chosen: map[string]string{}}
}

// VolumeChanged is the handler of the claim, volume and class caches: a
// claim created or bound may let a waiting pod be scheduled.
func (c *Controller) VolumeChanged(old, cur manifests.Object) {
	if pvc, ok := cur.(*manifests.PersistentVolumeClaim); ok && pvc.Spec.VolumeName != "" && c.vols != nil {
		c.vols.mu.Lock()
		delete(c.vols.chosen, pvc.UID)
		c.vols.mu.Unlock()
	}
	if pvc, ok := old.(*manifests.PersistentVolumeClaim); ok && cur == nil && c.vols != nil {
		c.vols.mu.Lock()
		delete(c.vols.chosen, pvc.UID)
		c.vols.mu.Unlock()
	}
	c.requeuePending()
}

// volumePod returns the pod to place instead of pod: pod itself when its
// volumes do not restrict it, else a copy whose required node affinity
// also holds the volumes' node constraints. blocked is a FitError reason
// when a claim keeps the pod from being scheduled at all.
func (v *volumes) volumePod(pod *manifests.Pod) (place *manifests.Pod, blocked string, err error) {
	var terms [][]manifests.NodeSelectorTerm
	for _, name := range manifests.PodClaimNames(pod) {
		o, ok := v.claims.Get(pod.Namespace + "/" + name)
		if !ok {
			return nil, fmt.Sprintf("persistentvolumeclaim %q not found", name), nil
		}
		pvc := o.(*manifests.PersistentVolumeClaim)
		if pvc.DeletionTimestamp != nil {
			return nil, fmt.Sprintf("persistentvolumeclaim %q is being deleted", name), nil
		}
		if pvc.Spec.VolumeName != "" {
			po, ok := v.pvs.Get(pvc.Spec.VolumeName)
			if !ok {
				return nil, fmt.Sprintf("persistentvolumeclaim %q bound to non-existent persistentvolume %q", name, pvc.Spec.VolumeName), nil
			}
			pv := po.(*manifests.PersistentVolume)
			if a := pv.Spec.NodeAffinity; a != nil && a.Required != nil {
				terms = append(terms, a.Required.NodeSelectorTerms)
			}
			continue
		}
		var sc *manifests.StorageClass
		if so, ok := v.classes.Get(manifests.ClaimStorageClass(pvc)); ok {
			sc = so.(*manifests.StorageClass)
		}
		cls := manifests.StorageClassParams(manifests.ClaimStorageClass(pvc), sc)
		if cls.BindingMode != manifests.VolumeBindingWaitForFirstConsumer {
			return nil, "pod has unbound immediate PersistentVolumeClaims", nil
		}
		v.mu.Lock()
		node := v.chosen[pvc.UID]
		v.mu.Unlock()
		if node != "" {
			terms = append(terms, []manifests.NodeSelectorTerm{{MatchExpressions: []manifests.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{node}}}}})
			continue
		}
		if !cls.Provisions() {
			// Static volumes only: the nodes that have one that fits.
			var any []manifests.NodeSelectorTerm
			found := false
			for _, po := range v.pvs.List(manifests.Selector{}) {
				pv := po.(*manifests.PersistentVolume)
				if pv.Spec.ClaimRef != nil || !manifests.VolumeFitsClaim(pv, pvc) {
					continue
				}
				found = true
				if a := pv.Spec.NodeAffinity; a == nil || a.Required == nil {
					any = nil // reachable from every node
					break
				}
				any = append(any, pv.Spec.NodeAffinity.Required.NodeSelectorTerms...)
			}
			if !found {
				return nil, fmt.Sprintf("persistentvolumeclaim %q: no persistent volumes available for this claim", name), nil
			}
			if any != nil {
				terms = append(terms, any)
			}
		}
	}
	if len(terms) == 0 {
		return pod, "", nil
	}
	cp, err := controller.Copy(pod)
	if err != nil {
		return nil, "", err
	}
	var cur []manifests.NodeSelectorTerm
	if a := cp.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			if len(t.MatchExpressions) > 0 { // an empty term matches no node
				cur = append(cur, t)
			}
		}
	} else {
		cur = []manifests.NodeSelectorTerm{{}} // no constraint yet: the neutral term
	}
	for _, alt := range terms {
		// (A1 or A2) and (B1 or B2) = A1B1 or A1B2 or A2B1 or A2B2.
		var next []manifests.NodeSelectorTerm
		for _, a := range cur {
			for _, b := range alt {
				var t manifests.NodeSelectorTerm
				t.MatchExpressions = append(append(t.MatchExpressions, a.MatchExpressions...), b.MatchExpressions...)
				next = append(next, t)
			}
		}
		cur = next
	}
	if cp.Spec.Affinity == nil {
		cp.Spec.Affinity = &manifests.Affinity{}
	}
	if cp.Spec.Affinity.NodeAffinity == nil {
		cp.Spec.Affinity.NodeAffinity = &manifests.NodeAffinity{}
	}
	cp.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &manifests.NodeSelector{NodeSelectorTerms: cur}
	return cp, "", nil
}

// chose remembers node for pod's unbound claims.
func (v *volumes) chose(pod *manifests.Pod, node string) {
	for _, name := range manifests.PodClaimNames(pod) {
		o, ok := v.claims.Get(pod.Namespace + "/" + name)
		if !ok {
			continue
		}
		if pvc := o.(*manifests.PersistentVolumeClaim); pvc.Spec.VolumeName == "" {
			v.mu.Lock()
			if v.chosen[pvc.UID] == "" {
				v.chosen[pvc.UID] = node
			}
			v.mu.Unlock()
		}
	}
}

// hasClaims reports whether pod uses a PersistentVolumeClaim.
func hasClaims(pod *manifests.Pod) bool {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].PersistentVolumeClaim != nil {
			return true
		}
	}
	return false
}

// placement returns the pod to place for pod (see volumePod), or the
// FitError that keeps it pending, over numNodes nodes.
func (v *volumes) placement(pod *manifests.Pod, numNodes int) (*manifests.Pod, *FitError) {
	place, blocked, err := v.volumePod(pod)
	if err != nil {
		blocked = err.Error()
	}
	if blocked != "" {
		return nil, &FitError{NumNodes: numNodes, Reasons: map[string]int{blocked: max(numNodes, 1)}}
	}
	return place, nil
}

// volumeFitError words a FitError of a pod placed with its volumes'
// constraints.
func volumeFitError(fe *FitError) *FitError {
	if n, ok := fe.Reasons[ReasonAffinity]; ok {
		delete(fe.Reasons, ReasonAffinity)
		fe.Reasons[ReasonVolumeAffinity] += n
	}
	return fe
}
