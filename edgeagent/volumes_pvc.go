package edgeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
)

// PersistentVolumeClaim volumes (docs/storage.md). A claim resolves to its
// bound PersistentVolume, a directory on this node:
//   - provisioned by manifests.LocalPathProvisioner: <data-dir>/volumes/<pv>,
//     created 0700 at the first mount, whatever the volume's nominal
//     local.path says;
//   - static: its local.path or hostPath.path, which must be under
//     <data-dir>/volumes or allowed by --allow-host-path.
//
// The claim and the volume are read through the API and remembered in the
// pod's record (podSources), so the pod restarts with its volume offline.
// The directory outlives the pod and the agent; it is removed only when
// the control plane deletes a Released volume of reclaim policy Delete
// (cleanupVolumes).

// volumeInfoFile records, in the volume directory, what the volume is: its
// name, claim and capacity (not enforced: a directory has no quota).
const volumeInfoFile = ".edge-volume.json"

// DefaultVolumeCleanupInterval is how often the agent looks for volumes to
// remove (Config.VolumeCleanupInterval).
const DefaultVolumeCleanupInterval = time.Minute

type volumeInfo struct {
	Volume        string `json:"volume"`
	Claim         string `json:"claim"` // namespace/name
	Capacity      string `json:"capacity"`
	ReclaimPolicy string `json:"reclaimPolicy"`
	StorageClass  string `json:"storageClass,omitempty"`
}

// volumesDir holds the provisioned volumes.
func (a *Agent) volumesDir() string { return filepath.Join(a.cfg.DataDir, "volumes") }

// claimVolumePath returns the directory of a persistentVolumeClaim volume,
// made if missing.
func (w *podWorker) claimVolumePath(ctx context.Context, pod *manifests.Pod, v manifests.Volume, src *podSources) (string, error) {
	name := v.PersistentVolumeClaim.ClaimName
	var pvc manifests.PersistentVolumeClaim
	if err := src.get(ctx, "persistentvolumeclaims", pod.Namespace, name, &pvc); err != nil {
		if client.IsNotFound(err) {
			return "", fmt.Errorf("volume %s: persistentvolumeclaim %q not found", v.Name, name)
		}
		return "", fmt.Errorf("volume %s: persistentvolumeclaim %q: %w", v.Name, name, err)
	}
	if pvc.Spec.VolumeName == "" || pvc.Status.Phase != manifests.ClaimBound {
		phase := pvc.Status.Phase
		if phase == "" {
			phase = manifests.ClaimPending
		}
		return "", fmt.Errorf("volume %s: persistentvolumeclaim %q is not bound yet (%s)", v.Name, name, phase)
	}
	var pv manifests.PersistentVolume
	if err := src.get(ctx, "persistentvolumes", "", pvc.Spec.VolumeName, &pv); err != nil {
		return "", fmt.Errorf("volume %s: persistentvolume %q of claim %q: %w", v.Name, pvc.Spec.VolumeName, name, err)
	}
	if r := pv.Spec.ClaimRef; r == nil || r.Namespace != pvc.Namespace || r.Name != pvc.Name || (r.UID != "" && r.UID != pvc.UID) {
		return "", fmt.Errorf("volume %s: persistentvolume %q is not bound to claim %q", v.Name, pv.Name, name)
	}
	if n := manifests.PVNodeName(&pv); n != "" && n != w.a.cfg.NodeName {
		return "", fmt.Errorf("volume %s: persistentvolume %q is on node %s, not on this node", v.Name, pv.Name, n)
	}
	dir, err := w.a.volumePath(&pv)
	if err != nil {
		return "", fmt.Errorf("volume %s: %w", v.Name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("volume %s: create %s: %w", v.Name, dir, err)
	}
	info := volumeInfo{Volume: pv.Name, Claim: pvc.Namespace + "/" + pvc.Name, Capacity: string(pv.Spec.Capacity[manifests.ResourceStorage]),
		ReclaimPolicy: pv.Spec.PersistentVolumeReclaimPolicy, StorageClass: pv.Spec.StorageClassName}
	if err := writeVolumeInfo(dir, info); err != nil {
		return "", fmt.Errorf("volume %s: %w", v.Name, err)
	}
	return dir, nil
}

// volumePath is where pv's directory is on this node.
func (a *Agent) volumePath(pv *manifests.PersistentVolume) (string, error) {
	if pv.Annotations[manifests.AnnProvisionedBy] == manifests.LocalPathProvisioner {
		if err := manifests.ValidateDNSSubdomain(pv.Name); err != nil {
			return "", fmt.Errorf("persistentvolume %q: %w", pv.Name, err)
		}
		return filepath.Join(a.volumesDir(), pv.Name), nil
	}
	path := manifests.PVPath(pv)
	if path == "" {
		return "", fmt.Errorf("persistentvolume %q has no local or hostPath source", pv.Name)
	}
	if resolved, err := resolveExisting(filepath.Clean(path)); err == nil && within(resolved, a.volumesDir()) {
		return resolved, nil
	}
	resolved, err := a.cfg.HostPaths.Check("persistentvolume "+pv.Name, path)
	if err != nil {
		return "", err
	}
	return resolved, nil
}

func writeVolumeInfo(dir string, info volumeInfo) error {
	raw, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, volumeInfoFile)
	if old, err := os.ReadFile(p); err == nil && string(old) == string(raw)+"\n" {
		return nil
	}
	return os.WriteFile(p, append(raw, '\n'), 0o600)
}

// claimVolumesInUse returns the provisioned volume names the pods of this
// agent (running or being torn down) mount, from their remembered claims.
func (a *Agent) claimVolumesInUse() map[string]bool {
	a.mu.Lock()
	ws := make([]*podWorker, 0, len(a.workers)+len(a.gone))
	for _, w := range a.workers {
		ws = append(ws, w)
	}
	for _, w := range a.gone {
		ws = append(ws, w)
	}
	a.mu.Unlock()
	used := map[string]bool{}
	for _, w := range ws {
		w.mu.Lock()
		for key, raw := range w.rec.Refs {
			if !strings.HasPrefix(key, state.RefKey("persistentvolumeclaims", "")) {
				continue
			}
			var pvc manifests.PersistentVolumeClaim
			if json.Unmarshal(raw, &pvc) == nil && pvc.Spec.VolumeName != "" {
				used[pvc.Spec.VolumeName] = true
			}
		}
		w.mu.Unlock()
	}
	return used
}

// volumeCleanupLoop removes, every interval and once the agent is
// connected, the directories of provisioned volumes the control plane is
// deleting (Released, reclaim policy Delete), then the volume's finalizer.
func (a *Agent) volumeCleanupLoop(ctx context.Context) {
	interval := a.cfg.VolumeCleanupInterval
	if interval <= 0 {
		interval = DefaultVolumeCleanupInterval
	}
	for waitFor(ctx, interval) {
		if !a.nc.IsConnected() {
			continue
		}
		if err := a.cleanupVolumes(ctx); err != nil {
			a.log.Warn("volume cleanup", "err", err)
		}
	}
}

// cleanupVolumes looks at each directory under <data-dir>/volumes: the
// volume being deleted (deletionTimestamp, with the cleanup finalizer) and
// mounted by no pod of this agent loses its directory, then its
// finalizer. A volume that is gone from the control plane keeps its
// directory: nothing says its data may go.
func (a *Agent) cleanupVolumes(ctx context.Context) error {
	entries, err := os.ReadDir(a.volumesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	used := a.claimVolumesInUse()
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || used[e.Name()] {
			continue
		}
		obj, err := a.api.Get(ctx, "persistentvolumes", "", e.Name())
		if err != nil {
			if !client.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("get persistentvolume %s: %w", e.Name(), err))
			}
			continue
		}
		pv, ok := obj.(*manifests.PersistentVolume)
		if !ok || pv.DeletionTimestamp == nil || !slices.Contains(pv.Finalizers, manifests.LocalVolumeCleanupFinalizer) ||
			pv.Annotations[manifests.AnnProvisionedBy] != manifests.LocalPathProvisioner || manifests.PVNodeName(pv) != a.cfg.NodeName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(a.volumesDir(), e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", e.Name(), err))
			continue
		}
		a.log.Info("volume directory removed (reclaim policy Delete)", "volume", pv.Name)
		cp := manifests.DeepCopy(pv).(*manifests.PersistentVolume)
		cp.Finalizers = slices.DeleteFunc(cp.Finalizers, func(f string) bool { return f == manifests.LocalVolumeCleanupFinalizer })
		if len(cp.Finalizers) == 0 {
			cp.Finalizers = nil
		}
		if _, err := a.api.Update(ctx, cp); err != nil && !client.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove the finalizer of persistentvolume %s: %w", pv.Name, err))
		}
	}
	return errors.Join(errs...)
}
