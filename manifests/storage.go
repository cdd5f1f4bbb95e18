package manifests

import (
	"fmt"
	"path"
	"strings"
)

// ---- PersistentVolume, PersistentVolumeClaim, StorageClass ----
//
// Storage on devices is local: a volume is a directory on one node, so every
// PersistentVolume carries a required nodeAffinity naming that node (a
// provisioned one always does; a static one should). See docs/storage.md.

// Storage defaults and names.
const (
	// DefaultStorageClass is the class a claim without storageClassName gets.
	// It needs no StorageClass object: it is built in (provisioner
	// LocalPathProvisioner, reclaim Delete, WaitForFirstConsumer).
	DefaultStorageClass = "local-path"
	// LocalPathProvisioner provisions a directory on the node a pod is
	// scheduled to.
	LocalPathProvisioner = "edge.io/local-path"
	// PVCProtectionFinalizer keeps a claim used by a pod from going away.
	PVCProtectionFinalizer = "kubernetes.io/pvc-protection"
	// ResourceStorage is the capacity/request resource name.
	ResourceStorage = "storage"
)

// Access modes.
const (
	ReadWriteOnce    = "ReadWriteOnce"
	ReadOnlyMany     = "ReadOnlyMany"
	ReadWriteMany    = "ReadWriteMany"
	ReadWriteOncePod = "ReadWriteOncePod"
)

// Reclaim policies.
const (
	ReclaimDelete = "Delete"
	ReclaimRetain = "Retain"
)

// Volume binding modes of a StorageClass.
const (
	VolumeBindingImmediate            = "Immediate"
	VolumeBindingWaitForFirstConsumer = "WaitForFirstConsumer"
)

// PersistentVolume phases.
const (
	VolumeAvailable = "Available"
	VolumeBound     = "Bound"
	VolumeReleased  = "Released"
	VolumeFailed    = "Failed"
)

// PersistentVolumeClaim phases.
const (
	ClaimPending = "Pending"
	ClaimBound   = "Bound"
	ClaimLost    = "Lost"
)

// VolumeModeFilesystem is the only volume mode supported.
const VolumeModeFilesystem = "Filesystem"

// PersistentVolume (v1, cluster-scoped) is a piece of storage on a node.
type PersistentVolume struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       PersistentVolumeSpec   `json:"spec"`
	Status     PersistentVolumeStatus `json:"status,omitzero"`
}

// PersistentVolumeSpec describes the volume.
type PersistentVolumeSpec struct {
	Capacity                      ResourceList        `json:"capacity,omitempty"`
	AccessModes                   []string            `json:"accessModes,omitempty"`
	PersistentVolumeReclaimPolicy string              `json:"persistentVolumeReclaimPolicy,omitempty"`
	StorageClassName              string              `json:"storageClassName,omitempty"`
	ClaimRef                      *ObjectReference    `json:"claimRef,omitempty"`
	NodeAffinity                  *VolumeNodeAffinity `json:"nodeAffinity,omitempty"`
	VolumeMode                    string              `json:"volumeMode,omitempty"`
	MountOptions                  []string            `json:"mountOptions,omitempty"`
	// Exactly one source is set.
	Local    *LocalVolumeSource    `json:"local,omitempty"`
	HostPath *HostPathVolumeSource `json:"hostPath,omitempty"`
}

// LocalVolumeSource is a directory on the volume's node.
type LocalVolumeSource struct {
	Path   string `json:"path"`
	FSType string `json:"fsType,omitempty"`
}

// VolumeNodeAffinity says which nodes can reach the volume.
type VolumeNodeAffinity struct {
	Required *NodeSelector `json:"required,omitempty"`
}

// PersistentVolumeStatus is the volume's lifecycle phase.
type PersistentVolumeStatus struct {
	Phase   string `json:"phase,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// PersistentVolumeClaim (v1, namespaced) asks for storage.
type PersistentVolumeClaim struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       PersistentVolumeClaimSpec   `json:"spec"`
	Status     PersistentVolumeClaimStatus `json:"status,omitzero"`
}

// PersistentVolumeClaimSpec is what is asked for.
type PersistentVolumeClaimSpec struct {
	AccessModes      []string                   `json:"accessModes,omitempty"`
	Resources        VolumeResourceRequirements `json:"resources,omitzero"`
	StorageClassName *string                    `json:"storageClassName,omitempty"`
	VolumeName       string                     `json:"volumeName,omitempty"`
	VolumeMode       *string                    `json:"volumeMode,omitempty"`
	Selector         *LabelSelector             `json:"selector,omitempty"`
}

// VolumeResourceRequirements holds the storage request (and limit).
type VolumeResourceRequirements struct {
	Requests ResourceList `json:"requests,omitempty"`
	Limits   ResourceList `json:"limits,omitempty"`
}

// PersistentVolumeClaimStatus is the claim's binding state.
type PersistentVolumeClaimStatus struct {
	Phase       string       `json:"phase,omitempty"`
	AccessModes []string     `json:"accessModes,omitempty"`
	Capacity    ResourceList `json:"capacity,omitempty"`
}

// StorageClass (storage.k8s.io/v1, cluster-scoped) describes how volumes
// of a class are provisioned.
type StorageClass struct {
	TypeMeta             `json:",inline"`
	ObjectMeta           `json:"metadata"`
	Provisioner          string            `json:"provisioner"`
	Parameters           map[string]string `json:"parameters,omitempty"`
	ReclaimPolicy        *string           `json:"reclaimPolicy,omitempty"`
	VolumeBindingMode    *string           `json:"volumeBindingMode,omitempty"`
	AllowVolumeExpansion *bool             `json:"allowVolumeExpansion,omitempty"`
	MountOptions         []string          `json:"mountOptions,omitempty"`
}

// PersistentVolumeClaimVolumeSource is a pod volume backed by a claim in the
// pod's namespace.
type PersistentVolumeClaimVolumeSource struct {
	ClaimName string `json:"claimName"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// ClaimStorageClass returns the class a claim asks for ("" = no class).
func ClaimStorageClass(c *PersistentVolumeClaim) string {
	if c.Spec.StorageClassName == nil {
		return DefaultStorageClass
	}
	return *c.Spec.StorageClassName
}

// PVNodeName returns the node a volume's nodeAffinity pins it to when the
// affinity is the simple form the provisioner writes (one term, one
// requirement kubernetes.io/hostname In [node]); "" otherwise.
func PVNodeName(pv *PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchExpressions) != 1 {
		return ""
	}
	r := terms[0].MatchExpressions[0]
	if r.Key != "kubernetes.io/hostname" || r.Operator != "In" || len(r.Values) != 1 {
		return ""
	}
	return r.Values[0]
}

// PVPath returns the directory of a volume (local.path or hostPath.path).
func PVPath(pv *PersistentVolume) string {
	switch {
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path
	case pv.Spec.HostPath != nil:
		return pv.Spec.HostPath.Path
	}
	return ""
}

var accessModes = []string{ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod}

func validateAccessModes(l *errList, p string, modes []string, required bool) {
	if len(modes) == 0 && required {
		l.required(p)
	}
	seen := map[string]bool{}
	for i, m := range modes {
		ip := fmt.Sprintf("%s[%d]", p, i)
		if !oneOf(m, accessModes...) {
			l.unsupported(ip, m, accessModes...)
		} else if seen[m] {
			l.add(ip, "duplicate value %q", m)
		}
		seen[m] = true
	}
	if seen[ReadWriteOncePod] && len(modes) > 1 {
		l.add(p, "forbidden: may not use ReadWriteOncePod with other access modes")
	}
}

func validateStorageQuantity(l *errList, p string, rl ResourceList, required bool) {
	for _, name := range sortedKeys(rl) {
		if name != ResourceStorage {
			l.unsupported(p+"["+name+"]", name, ResourceStorage)
		}
	}
	q, ok := rl[ResourceStorage]
	if !ok {
		if required {
			l.required(p + "[" + ResourceStorage + "]")
		}
		return
	}
	if validateQuantity(l, p+"["+ResourceStorage+"]", q) && q.Sign() == 0 {
		l.invalid(p+"["+ResourceStorage+"]", string(q), "must be greater than zero")
	}
}

func validateStorageClassName(l *errList, p, name string) {
	if name == "" {
		return
	}
	if err := ValidateDNSSubdomain(name); err != nil {
		l.invalid(p, name, err.Error())
	}
}

func validatePersistentVolume(l *errList, pv *PersistentVolume) {
	s := &pv.Spec
	validateStorageQuantity(l, "spec.capacity", s.Capacity, true)
	validateAccessModes(l, "spec.accessModes", s.AccessModes, true)
	if s.PersistentVolumeReclaimPolicy != "" && !oneOf(s.PersistentVolumeReclaimPolicy, ReclaimDelete, ReclaimRetain) {
		l.unsupported("spec.persistentVolumeReclaimPolicy", s.PersistentVolumeReclaimPolicy, ReclaimDelete, ReclaimRetain)
	}
	validateStorageClassName(l, "spec.storageClassName", s.StorageClassName)
	if s.VolumeMode != "" && s.VolumeMode != VolumeModeFilesystem {
		l.unsupported("spec.volumeMode", s.VolumeMode, VolumeModeFilesystem)
	}
	if len(s.MountOptions) > 0 {
		l.add("spec.mountOptions", "forbidden: not supported (volumes are directories bind-mounted or preopened as they are)")
	}
	if r := s.ClaimRef; r != nil {
		if r.Name == "" {
			l.required("spec.claimRef.name")
		}
		if r.Namespace == "" {
			l.required("spec.claimRef.namespace")
		}
		if r.Kind != "" && r.Kind != "PersistentVolumeClaim" {
			l.unsupported("spec.claimRef.kind", r.Kind, "PersistentVolumeClaim")
		}
	}
	if a := s.NodeAffinity; a != nil {
		if a.Required == nil || len(a.Required.NodeSelectorTerms) == 0 {
			l.required("spec.nodeAffinity.required.nodeSelectorTerms")
		} else {
			for i, t := range a.Required.NodeSelectorTerms {
				tp := fmt.Sprintf("spec.nodeAffinity.required.nodeSelectorTerms[%d]", i)
				if len(t.MatchExpressions) == 0 {
					l.required(tp + ".matchExpressions")
				}
				validateNodeSelectorTerm(l, t, tp)
			}
		}
	}
	n := 0
	if s.Local != nil {
		n++
		validateVolumePath(l, "spec.local.path", s.Local.Path)
		if s.NodeAffinity == nil {
			l.required("spec.nodeAffinity")
		}
	}
	if s.HostPath != nil {
		n++
		validateVolumePath(l, "spec.hostPath.path", s.HostPath.Path)
		if s.HostPath.Type != "" && !oneOf(s.HostPath.Type, "DirectoryOrCreate", "Directory") {
			l.unsupported("spec.hostPath.type", s.HostPath.Type, "", "DirectoryOrCreate", "Directory")
		}
	}
	switch {
	case n == 0:
		l.add("spec", "required: must specify a volume source (local or hostPath)")
	case n > 1:
		l.add("spec", "forbidden: may not specify more than 1 volume source")
	}
	if ph := pv.Status.Phase; ph != "" && !oneOf(ph, VolumeAvailable, VolumeBound, VolumeReleased, VolumeFailed, "Pending") {
		l.unsupported("status.phase", ph, "Pending", VolumeAvailable, VolumeBound, VolumeReleased, VolumeFailed)
	}
}

func validateVolumePath(l *errList, p, v string) {
	switch {
	case v == "":
		l.required(p)
	case !strings.HasPrefix(v, "/"):
		l.invalid(p, v, "must be an absolute path")
	case path.Clean(v) != v || strings.Contains(v, "/../"):
		l.invalid(p, v, "must be a clean path (no '..', '//' or trailing '/')")
	case len(v) > 4096:
		l.invalid(p, clip(v), "must be no more than 4096 characters")
	}
}

func validatePersistentVolumeClaim(l *errList, c *PersistentVolumeClaim) {
	s := &c.Spec
	validateAccessModes(l, "spec.accessModes", s.AccessModes, true)
	validateStorageQuantity(l, "spec.resources.requests", s.Resources.Requests, true)
	validateStorageQuantity(l, "spec.resources.limits", s.Resources.Limits, false)
	if req, ok := s.Resources.Requests[ResourceStorage]; ok {
		if lim, ok := s.Resources.Limits[ResourceStorage]; ok && req.Cmp(lim) > 0 {
			l.invalid("spec.resources.requests[storage]", string(req), "must be less than or equal to the storage limit")
		}
	}
	if s.StorageClassName != nil {
		validateStorageClassName(l, "spec.storageClassName", *s.StorageClassName)
	}
	if s.VolumeName != "" {
		if err := ValidateDNSSubdomain(s.VolumeName); err != nil {
			l.invalid("spec.volumeName", s.VolumeName, err.Error())
		}
	}
	if s.VolumeMode != nil && *s.VolumeMode != VolumeModeFilesystem {
		l.unsupported("spec.volumeMode", *s.VolumeMode, VolumeModeFilesystem)
	}
	if s.Selector != nil {
		l.add("spec.selector", "forbidden: not supported (name the volume in spec.volumeName or use a storage class)")
	}
	if ph := c.Status.Phase; ph != "" && !oneOf(ph, ClaimPending, ClaimBound, ClaimLost) {
		l.unsupported("status.phase", ph, ClaimPending, ClaimBound, ClaimLost)
	}
	validateAccessModes(l, "status.accessModes", c.Status.AccessModes, false)
	validateStorageQuantity(l, "status.capacity", c.Status.Capacity, false)
}

func validateStorageClass(l *errList, sc *StorageClass) {
	if sc.Provisioner == "" {
		l.required("provisioner")
	} else if sc.Provisioner != LocalPathProvisioner && sc.Provisioner != "rancher.io/local-path" && sc.Provisioner != "kubernetes.io/no-provisioner" {
		l.unsupported("provisioner", sc.Provisioner, LocalPathProvisioner, "rancher.io/local-path", "kubernetes.io/no-provisioner")
	}
	if p := sc.ReclaimPolicy; p != nil && !oneOf(*p, ReclaimDelete, ReclaimRetain) {
		l.unsupported("reclaimPolicy", *p, ReclaimDelete, ReclaimRetain)
	}
	if m := sc.VolumeBindingMode; m != nil && !oneOf(*m, VolumeBindingImmediate, VolumeBindingWaitForFirstConsumer) {
		l.unsupported("volumeBindingMode", *m, VolumeBindingImmediate, VolumeBindingWaitForFirstConsumer)
	}
	if isTrue(sc.AllowVolumeExpansion) {
		l.add("allowVolumeExpansion", "forbidden: volume expansion is not supported")
	}
	if len(sc.MountOptions) > 0 {
		l.add("mountOptions", "forbidden: not supported")
	}
	for _, k := range sortedKeys(sc.Parameters) {
		l.add("parameters["+k+"]", "forbidden: the local-path provisioner takes no parameters")
	}
}

// validatePersistentVolumeClaimUpdate: a claim's spec is immutable except
// that spec.volumeName may be set once (by the binder).
func validatePersistentVolumeClaimUpdate(l *errList, n, o *PersistentVolumeClaim) {
	if !EqualJSON(n.Spec.AccessModes, o.Spec.AccessModes) {
		l.add("spec.accessModes", "forbidden: field is immutable")
	}
	if !EqualJSON(n.Spec.Resources, o.Spec.Resources) {
		l.add("spec.resources", "forbidden: field is immutable (volume expansion is not supported)")
	}
	if ClaimStorageClass(n) != ClaimStorageClass(o) {
		l.add("spec.storageClassName", "forbidden: field is immutable")
	}
	if o.Spec.VolumeName != "" && n.Spec.VolumeName != o.Spec.VolumeName {
		l.add("spec.volumeName", "forbidden: field is immutable once set")
	}
}

// validatePersistentVolumeUpdate: the source, capacity and node of a volume
// are immutable.
func validatePersistentVolumeUpdate(l *errList, n, o *PersistentVolume) {
	if PVPath(n) != PVPath(o) || (n.Spec.Local == nil) != (o.Spec.Local == nil) {
		l.add("spec", "forbidden: the volume source is immutable")
	}
	if o.Spec.NodeAffinity != nil && !EqualJSON(n.Spec.NodeAffinity, o.Spec.NodeAffinity) {
		l.add("spec.nodeAffinity", "forbidden: field is immutable once set")
	}
	if n.Spec.StorageClassName != o.Spec.StorageClassName {
		l.add("spec.storageClassName", "forbidden: field is immutable")
	}
}

func validateStorageClassUpdate(l *errList, n, o *StorageClass) {
	if n.Provisioner != o.Provisioner || !EqualJSON(n.ReclaimPolicy, o.ReclaimPolicy) || !EqualJSON(n.VolumeBindingMode, o.VolumeBindingMode) || !EqualJSON(n.Parameters, o.Parameters) {
		l.add("provisioner", "forbidden: provisioner, parameters, reclaimPolicy and volumeBindingMode are immutable")
	}
}

func defaultPersistentVolume(pv *PersistentVolume) {
	if pv.Spec.PersistentVolumeReclaimPolicy == "" {
		pv.Spec.PersistentVolumeReclaimPolicy = ReclaimRetain
	}
	if pv.Spec.VolumeMode == "" {
		pv.Spec.VolumeMode = VolumeModeFilesystem
	}
	if pv.Status.Phase == "" {
		pv.Status.Phase = "Pending"
	}
	if r := pv.Spec.ClaimRef; r != nil {
		if r.Kind == "" {
			r.Kind = "PersistentVolumeClaim"
		}
		if r.APIVersion == "" {
			r.APIVersion = "v1"
		}
	}
}

func defaultPersistentVolumeClaim(c *PersistentVolumeClaim) {
	if c.Spec.StorageClassName == nil {
		sc := DefaultStorageClass
		c.Spec.StorageClassName = &sc
	}
	if c.Spec.VolumeMode == nil {
		m := VolumeModeFilesystem
		c.Spec.VolumeMode = &m
	}
	if c.Status.Phase == "" {
		c.Status.Phase = ClaimPending
	}
}

func defaultStorageClass(sc *StorageClass) {
	if sc.ReclaimPolicy == nil {
		p := ReclaimDelete
		sc.ReclaimPolicy = &p
	}
	if sc.VolumeBindingMode == nil {
		m := VolumeBindingImmediate
		sc.VolumeBindingMode = &m
	}
}

func validateClaimVolumeSource(l *errList, p string, s *PersistentVolumeClaimVolumeSource) {
	if s.ClaimName == "" {
		l.required(p + ".claimName")
	} else if err := ValidateDNSSubdomain(s.ClaimName); err != nil {
		l.invalid(p+".claimName", s.ClaimName, err.Error())
	}
}

// Annotations the binder writes.
const (
	// AnnProvisionedBy names the provisioner of a PersistentVolume.
	AnnProvisionedBy = "pv.kubernetes.io/provisioned-by"
	// AnnSelectedNode is the node a WaitForFirstConsumer claim was bound for.
	AnnSelectedNode = "volume.kubernetes.io/selected-node"
	// AnnBindCompleted marks a claim the binder bound.
	AnnBindCompleted = "pv.kubernetes.io/bind-completed"
	// LocalVolumeCleanupFinalizer keeps a provisioned volume (reclaim
	// Delete) until the agent of its node has removed its directory.
	LocalVolumeCleanupFinalizer = "edge.io/local-volume-cleanup"
	// NoProvisioner is the provisioner of classes of static volumes only.
	NoProvisioner = "kubernetes.io/no-provisioner"
)

// ClassParams is how a storage class binds and provisions.
type ClassParams struct {
	Name          string
	Provisioner   string // "" or NoProvisioner: static volumes only
	ReclaimPolicy string
	BindingMode   string
}

// Provisions reports whether the class creates volumes (local-path).
func (p ClassParams) Provisions() bool {
	return p.Provisioner == LocalPathProvisioner || p.Provisioner == "rancher.io/local-path"
}

// StorageClassParams resolves class name with its StorageClass object (nil
// when there is none): the built-in DefaultStorageClass when no object
// overrides it; a class with no object (or "") binds static volumes only,
// at once.
func StorageClassParams(name string, sc *StorageClass) ClassParams {
	if sc != nil {
		p := ClassParams{Name: name, Provisioner: sc.Provisioner, ReclaimPolicy: ReclaimDelete, BindingMode: VolumeBindingImmediate}
		if sc.ReclaimPolicy != nil {
			p.ReclaimPolicy = *sc.ReclaimPolicy
		}
		if sc.VolumeBindingMode != nil {
			p.BindingMode = *sc.VolumeBindingMode
		}
		return p
	}
	if name == DefaultStorageClass {
		return ClassParams{Name: name, Provisioner: LocalPathProvisioner, ReclaimPolicy: ReclaimDelete, BindingMode: VolumeBindingWaitForFirstConsumer}
	}
	return ClassParams{Name: name, ReclaimPolicy: ReclaimRetain, BindingMode: VolumeBindingImmediate}
}

// ClaimRequest is the storage a claim asks for.
func ClaimRequest(c *PersistentVolumeClaim) Quantity {
	return c.Spec.Resources.Requests[ResourceStorage]
}

// VolumeFitsClaim reports whether the unbound volume pv can serve claim
// c: same class, enough capacity, every access mode asked for, not being
// deleted, and not reserved for another claim.
func VolumeFitsClaim(pv *PersistentVolume, c *PersistentVolumeClaim) bool {
	if pv.DeletionTimestamp != nil || pv.Spec.StorageClassName != ClaimStorageClass(c) {
		return false
	}
	if ph := pv.Status.Phase; ph != "" && ph != "Pending" && ph != VolumeAvailable {
		return false
	}
	if r := pv.Spec.ClaimRef; r != nil && (r.Namespace != c.Namespace || r.Name != c.Name || (r.UID != "" && r.UID != c.UID)) {
		return false
	}
	if c.Spec.VolumeName != "" && c.Spec.VolumeName != pv.Name {
		return false
	}
	capacity, ok := pv.Spec.Capacity[ResourceStorage]
	if !ok || capacity.Cmp(ClaimRequest(c)) < 0 {
		return false
	}
	for _, m := range c.Spec.AccessModes {
		found := false
		for _, have := range pv.Spec.AccessModes {
			if have == m {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// VolumeReachableFrom reports whether a node with labels satisfies pv's
// nodeAffinity (a volume without one is reachable from every node).
func VolumeReachableFrom(pv *PersistentVolume, labels map[string]string) bool {
	a := pv.Spec.NodeAffinity
	if a == nil || a.Required == nil {
		return true
	}
	for _, t := range a.Required.NodeSelectorTerms {
		if t.Matches(labels) {
			return true
		}
	}
	return false
}

// PodClaimNames returns the claims pod's volumes use.
func PodClaimNames(pod *Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}
