package volume

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/gc"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// env is a real NATS server, store and informers with the controller
// running over them.
type env struct {
	ctx context.Context
	st  *store.Store
	rec *controllertest.Recorder
	// classes is the controller's StorageClass cache.
	classes *controller.Informer
}

func start(t *testing.T) *env {
	t.Helper()
	controllertest.QuietLogs(t)
	e := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	infs := map[string]*controller.Informer{}
	for _, r := range []string{"pods", "nodes", "persistentvolumeclaims", "persistentvolumes", "storageclasses"} {
		infs[r] = controller.NewInformer(e.Store, r)
	}
	rec := &controllertest.Recorder{}
	c := New(e.Store, Listers{Pods: infs["pods"], Nodes: infs["nodes"], Claims: infs["persistentvolumeclaims"],
		Volumes: infs["persistentvolumes"], Classes: infs["storageclasses"]}, rec)
	infs["persistentvolumeclaims"].AddHandler(c.ClaimChanged)
	infs["persistentvolumes"].AddHandler(c.VolumeChanged)
	infs["storageclasses"].AddHandler(c.ClassChanged)
	infs["pods"].AddHandler(c.PodChanged)
	for _, inf := range infs {
		go inf.Run(ctx)
	}
	go func() {
		for _, inf := range infs {
			if inf.WaitForSync(ctx) != nil {
				return
			}
		}
		c.Run(ctx)
	}()
	return &env{ctx: ctx, st: e.Store, rec: rec, classes: infs["storageclasses"]}
}

func (e *env) create(t *testing.T, obj manifests.Object) manifests.Object {
	t.Helper()
	manifests.Default(obj)
	if err := manifests.Validate(obj); err != nil {
		t.Fatalf("invalid fixture: %v", err)
	}
	got, err := e.st.Create(e.ctx, obj)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *env) claim(t *testing.T, name string) (*manifests.PersistentVolumeClaim, error) {
	o, err := e.st.Get(e.ctx, "persistentvolumeclaims", "apps", name)
	if err != nil {
		return nil, err
	}
	return o.(*manifests.PersistentVolumeClaim), nil
}

func (e *env) volume(t *testing.T, name string) (*manifests.PersistentVolume, error) {
	o, err := e.st.Get(e.ctx, "persistentvolumes", "", name)
	if err != nil {
		return nil, err
	}
	return o.(*manifests.PersistentVolume), nil
}

// delete deletes obj as the API does: marked when it has finalizers.
// delete deletes as the API does: a conflict with a controller's
// concurrent write (the claim's status) is read again and retried.
func (e *env) delete(t *testing.T, resource, namespace, name string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		o, err := e.st.Get(e.ctx, resource, namespace, name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = gc.Delete(e.ctx, e.st, o, "", time.Now())
		if client.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
}

func claimFixture(name, class, size string) *manifests.PersistentVolumeClaim {
	c := &manifests.PersistentVolumeClaim{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "apps"},
		Spec: manifests.PersistentVolumeClaimSpec{
			AccessModes: []string{manifests.ReadWriteOnce},
			Resources:   manifests.VolumeResourceRequirements{Requests: manifests.ResourceList{"storage": manifests.Quantity(size)}},
		},
	}
	if class != "" {
		c.Spec.StorageClassName = &class
	}
	return c
}

func podFixture(name, node string, claims ...string) *manifests.Pod {
	p := &manifests.Pod{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "apps"},
		Spec:       manifests.PodSpec{NodeName: node, Containers: []manifests.Container{{Name: "c", Image: "busybox:1"}}},
	}
	for i, c := range claims {
		p.Spec.Volumes = append(p.Spec.Volumes, manifests.Volume{Name: fmt.Sprintf("v%d", i),
			VolumeSource: manifests.VolumeSource{PersistentVolumeClaim: &manifests.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return p
}

func staticVolume(name, node, class, size, reclaim string) *manifests.PersistentVolume {
	return &manifests.PersistentVolume{
		ObjectMeta: manifests.ObjectMeta{Name: name},
		Spec: manifests.PersistentVolumeSpec{
			Capacity:                      manifests.ResourceList{"storage": manifests.Quantity(size)},
			AccessModes:                   []string{manifests.ReadWriteOnce},
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: reclaim,
			Local:                         &manifests.LocalVolumeSource{Path: "/srv/volumes/" + name},
			NodeAffinity: &manifests.VolumeNodeAffinity{Required: &manifests.NodeSelector{NodeSelectorTerms: []manifests.NodeSelectorTerm{{
				MatchExpressions: []manifests.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{node}}},
			}}}},
		},
	}
}

// boundTo waits until claim name is Bound to a volume and returns both.
func (e *env) boundTo(t *testing.T, name string) (*manifests.PersistentVolumeClaim, *manifests.PersistentVolume) {
	t.Helper()
	var pvc *manifests.PersistentVolumeClaim
	var pv *manifests.PersistentVolume
	controllertest.Eventually(t, 10*time.Second, func() error {
		var err error
		if pvc, err = e.claim(t, name); err != nil {
			return err
		}
		if pvc.Status.Phase != manifests.ClaimBound || pvc.Spec.VolumeName == "" {
			return fmt.Errorf("claim %s: %s, volume %q", name, pvc.Status.Phase, pvc.Spec.VolumeName)
		}
		if pv, err = e.volume(t, pvc.Spec.VolumeName); err != nil {
			return err
		}
		if pv.Status.Phase != manifests.VolumeBound {
			return fmt.Errorf("volume %s: %s", pv.Name, pv.Status.Phase)
		}
		return nil
	})
	return pvc, pv
}

// TestClaimBoundOnFirstConsumer: a claim of the default class (local-path,
// WaitForFirstConsumer) waits, protected by its finalizer, until a pod
// using it is bound to a node; then a volume is provisioned on that node
// with the claim's size and the claim is bound to it.
func TestClaimBoundOnFirstConsumer(t *testing.T) {
	e := start(t)
	e.create(t, claimFixture("data", "", "256Mi"))
	controllertest.Eventually(t, 10*time.Second, func() error {
		pvc, err := e.claim(t, "data")
		if err != nil {
			return err
		}
		if !slices.Contains(pvc.Finalizers, manifests.PVCProtectionFinalizer) || !e.rec.Has(EventWaitForFirstConsumer) {
			return fmt.Errorf("claim: finalizers %v, events %v", pvc.Finalizers, e.rec.Reasons())
		}
		return nil
	})
	// An unscheduled pod changes nothing.
	e.create(t, podFixture("pending", "", "data"))
	if pvc, _ := e.claim(t, "data"); pvc.Status.Phase != manifests.ClaimPending || pvc.Spec.VolumeName != "" {
		t.Fatalf("claim bound before its consumer was scheduled: %+v", pvc)
	}
	e.create(t, podFixture("web", "node-b", "data"))
	pvc, pv := e.boundTo(t, "data")
	if pv.Name != "pvc-"+pvc.UID || manifests.PVNodeName(pv) != "node-b" || pv.Spec.Capacity["storage"] != "256Mi" ||
		pv.Spec.PersistentVolumeReclaimPolicy != manifests.ReclaimDelete || pv.Spec.StorageClassName != manifests.DefaultStorageClass ||
		pv.Spec.Local == nil || pv.Spec.Local.Path != DataDirPath+"/"+pv.Name || pv.Annotations[manifests.AnnProvisionedBy] != manifests.LocalPathProvisioner ||
		pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != pvc.UID || !slices.Contains(pv.Finalizers, manifests.LocalVolumeCleanupFinalizer) {
		t.Fatalf("provisioned volume: %+v", pv)
	}
	if pvc.Status.Capacity["storage"] != "256Mi" || !slices.Equal(pvc.Status.AccessModes, []string{manifests.ReadWriteOnce}) || pvc.Annotations[manifests.AnnSelectedNode] != "node-b" {
		t.Fatalf("bound claim: %+v", pvc)
	}
	if err := manifests.Validate(pv); err != nil {
		t.Fatalf("provisioned volume invalid: %v", err)
	}
	if !e.rec.Has(EventProvisioningSucceeded) {
		t.Errorf("events %v", e.rec.Reasons())
	}
}

// TestStaticVolumeMatched: claims bind to the smallest static volume of
// their class that is big enough and has their access modes; a
// WaitForFirstConsumer class without a provisioner picks the volume on
// the node of the claim's pod.
func TestStaticVolumeMatched(t *testing.T) {
	e := start(t)
	e.create(t, staticVolume("small", "node-a", "manual", "50Mi", ""))
	e.create(t, staticVolume("fits", "node-b", "manual", "1Gi", ""))
	e.create(t, staticVolume("big", "node-a", "manual", "10Gi", ""))
	e.create(t, staticVolume("other-class", "node-a", "slow", "1Gi", ""))
	controllertest.Eventually(t, 10*time.Second, func() error {
		pv, err := e.volume(t, "fits")
		if err != nil || pv.Status.Phase != manifests.VolumeAvailable {
			return fmt.Errorf("volume fits: %v %v", pv, err)
		}
		return nil
	})
	e.create(t, claimFixture("db", "manual", "100Mi"))
	pvc, pv := e.boundTo(t, "db")
	if pv.Name != "fits" || pvc.Status.Capacity["storage"] != "1Gi" {
		t.Fatalf("claim db bound to %s (%v), want fits (1Gi)", pv.Name, pvc.Status.Capacity)
	}
	// An access mode no volume has: stays Pending.
	rwx := claimFixture("shared", "manual", "10Mi")
	rwx.Spec.AccessModes = []string{manifests.ReadWriteMany}
	e.create(t, rwx)

	wffc, noProv := manifests.VolumeBindingWaitForFirstConsumer, manifests.NoProvisioner
	e.create(t, &manifests.StorageClass{ObjectMeta: manifests.ObjectMeta{Name: "local-static"}, Provisioner: noProv, VolumeBindingMode: &wffc})
	// A claim of a class the controller does not know yet binds at once
	// (as in Kubernetes): wait until its cache has the class.
	controllertest.Eventually(t, 10*time.Second, func() error {
		if _, ok := e.classes.Get("local-static"); !ok {
			return fmt.Errorf("class local-static not in the controller's cache")
		}
		return nil
	})
	e.create(t, staticVolume("on-a", "node-a", "local-static", "1Gi", ""))
	e.create(t, staticVolume("on-c", "node-c", "local-static", "1Gi", ""))
	e.create(t, claimFixture("logs", "local-static", "1Gi"))
	e.create(t, podFixture("logger", "node-c", "logs"))
	_, pv = e.boundTo(t, "logs")
	if pv.Name != "on-c" {
		t.Fatalf("claim logs bound to %s, want on-c (the volume on its pod's node)", pv.Name)
	}
	if pvc, _ := e.claim(t, "shared"); pvc.Status.Phase != manifests.ClaimPending || pvc.Spec.VolumeName != "" {
		t.Fatalf("claim shared: %+v", pvc.Status)
	}
	if v, _ := e.volume(t, "small"); v.Spec.ClaimRef != nil {
		t.Fatalf("volume small bound: %+v", v.Spec.ClaimRef)
	}
}

// TestReclaimDeleteAndRetain: a deleted claim releases its volume; a
// provisioned (Delete) volume is marked deleted, goes once the agent has
// removed its finalizer; a Retain volume stays Released.
func TestReclaimDeleteAndRetain(t *testing.T) {
	e := start(t)
	e.create(t, claimFixture("scratch", "", "10Mi"))
	e.create(t, staticVolume("keep", "node-a", "manual", "1Gi", manifests.ReclaimRetain))
	e.create(t, claimFixture("archive", "manual", "1Gi"))
	p := e.create(t, podFixture("w", "node-a", "scratch"))
	_, pv := e.boundTo(t, "scratch")
	e.boundTo(t, "archive")
	if _, err := e.st.Delete(e.ctx, "pods", "apps", p.GetObjectMeta().Name, 0); err != nil {
		t.Fatal(err)
	}
	e.delete(t, "persistentvolumeclaims", "apps", "scratch")
	e.delete(t, "persistentvolumeclaims", "apps", "archive")
	var marked *manifests.PersistentVolume
	controllertest.Eventually(t, 10*time.Second, func() error {
		if _, err := e.claim(t, "scratch"); !client.IsNotFound(err) {
			return fmt.Errorf("claim scratch still there (%v)", err)
		}
		v, err := e.volume(t, pv.Name)
		if err != nil {
			return err
		}
		if v.Status.Phase != manifests.VolumeReleased || v.DeletionTimestamp == nil {
			return fmt.Errorf("volume %s: %s, deletionTimestamp %v", v.Name, v.Status.Phase, v.DeletionTimestamp)
		}
		marked = v
		return nil
	})
	// It waits for the agent: still there a moment later.
	time.Sleep(200 * time.Millisecond) // only to show nothing else removes it
	if _, err := e.volume(t, pv.Name); err != nil {
		t.Fatalf("volume deleted before its directory was removed: %v", err)
	}
	// The agent removes the directory, then the finalizer.
	cp := manifests.DeepCopy(marked).(*manifests.PersistentVolume)
	cp.Finalizers = nil
	if _, err := e.st.Update(e.ctx, cp); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, func() error {
		if _, err := e.volume(t, pv.Name); !client.IsNotFound(err) {
			return fmt.Errorf("volume %s still there (%v)", pv.Name, err)
		}
		v, err := e.volume(t, "keep")
		if err != nil {
			return err
		}
		if v.Status.Phase != manifests.VolumeReleased || v.DeletionTimestamp != nil {
			return fmt.Errorf("volume keep: %s, deletionTimestamp %v", v.Status.Phase, v.DeletionTimestamp)
		}
		return nil
	})
	// A new claim does not get the Released volume.
	e.create(t, claimFixture("again", "manual", "1Gi"))
	time.Sleep(200 * time.Millisecond) // only to give a wrong binding the time to happen
	if pvc, _ := e.claim(t, "again"); pvc.Spec.VolumeName != "" {
		t.Fatalf("claim again bound to the released volume %s", pvc.Spec.VolumeName)
	}
}

// TestPVCProtection: a claim a pod uses is only marked when deleted; it
// goes when the pod does.
func TestPVCProtection(t *testing.T) {
	e := start(t)
	e.create(t, claimFixture("data", "", "10Mi"))
	e.create(t, podFixture("user", "node-a", "data"))
	e.boundTo(t, "data")
	e.delete(t, "persistentvolumeclaims", "apps", "data")
	time.Sleep(300 * time.Millisecond) // only to give a wrong removal the time to happen
	pvc, err := e.claim(t, "data")
	if err != nil {
		t.Fatalf("claim in use deleted: %v", err)
	}
	if pvc.DeletionTimestamp == nil || !slices.Contains(pvc.Finalizers, manifests.PVCProtectionFinalizer) {
		t.Fatalf("claim in use: %+v", pvc.ObjectMeta)
	}
	if _, err := e.st.Delete(e.ctx, "pods", "apps", "user", 0); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, func() error {
		if _, err := e.claim(t, "data"); !client.IsNotFound(err) {
			return fmt.Errorf("claim still there (%v)", err)
		}
		return nil
	})
}
