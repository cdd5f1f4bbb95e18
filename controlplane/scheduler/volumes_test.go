package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

func withClaim(name string) podOpt {
	return func(p *manifests.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, manifests.Volume{Name: "v-" + name,
			VolumeSource: manifests.VolumeSource{PersistentVolumeClaim: &manifests.PersistentVolumeClaimVolumeSource{ClaimName: name}}})
	}
}

func testClaim(name, volume string) *manifests.PersistentVolumeClaim {
	c := &manifests.PersistentVolumeClaim{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default", UID: "uid-" + name},
		Spec: manifests.PersistentVolumeClaimSpec{
			AccessModes: []string{manifests.ReadWriteOnce},
			Resources:   manifests.VolumeResourceRequirements{Requests: manifests.ResourceList{"storage": "1Gi"}},
			VolumeName:  volume,
		},
	}
	manifests.Default(c)
	if volume != "" {
		c.Status.Phase = manifests.ClaimBound
	}
	return c
}

func testVolume(name, node string) *manifests.PersistentVolume {
	return &manifests.PersistentVolume{
		ObjectMeta: manifests.ObjectMeta{Name: name},
		Spec: manifests.PersistentVolumeSpec{
			Capacity: manifests.ResourceList{"storage": "1Gi"}, AccessModes: []string{manifests.ReadWriteOnce},
			StorageClassName: manifests.DefaultStorageClass, Local: &manifests.LocalVolumeSource{Path: "/v/" + name},
			NodeAffinity: &manifests.VolumeNodeAffinity{Required: &manifests.NodeSelector{NodeSelectorTerms: []manifests.NodeSelectorTerm{{
				MatchExpressions: []manifests.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{node}}},
			}}}},
		},
		Status: manifests.PersistentVolumeStatus{Phase: manifests.VolumeBound},
	}
}

// TestScheduleWithClaims: pods whose claim is bound to a volume on node b
// land on b only (the scheduler would otherwise spread them); a node
// selector that excludes b leaves the pod unschedulable; a missing claim,
// or one being deleted, keeps the pod pending with a message naming it;
// pods sharing an unbound WaitForFirstConsumer claim go to the node chosen
// for the first of them.
func TestScheduleWithClaims(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	pods := cache{}
	nodes := cache{}
	for _, n := range []string{"a", "b", "c"} {
		nodes[n] = node(n, labels("kubernetes.io/hostname", n, "site", n))
	}
	claims, pvs, classes := cache{}, cache{}, cache{}
	claims["default/data"] = testClaim("data", "vol-b")
	pvs["vol-b"] = testVolume("vol-b", "b")
	c := NewController(env.Store, pods, nodes, &fakeRecorder{})
	c.SetVolumeListers(claims, pvs, classes)

	create := func(p *manifests.Pod) {
		t.Helper()
		p.APIVersion, p.Kind = "v1", "Pod"
		o, err := env.Store.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		pods[controller.Key(o)] = o
	}
	schedule := func(name string) (string, error) {
		t.Helper()
		err := c.Sync(ctx, "default/"+name)
		got := storedPod(t, env.Store, name)
		if err != nil {
			if cond := condition(got.Status, manifests.PodScheduled); cond != nil {
				return "", fmt.Errorf("%w: %s", err, cond.Message)
			}
			return "", err
		}
		return got.Spec.NodeName, nil
	}

	// Without a claim the same pod goes elsewhere (the test would prove
	// nothing otherwise).
	create(pod("free"))
	if n, err := schedule("free"); err != nil || n == "b" {
		t.Fatalf("free on %q (%v): want a node other than b", n, err)
	}
	for i := range 6 {
		name := fmt.Sprintf("with-claim-%d", i)
		create(pod(name, withClaim("data")))
		n, err := schedule(name)
		if err != nil || n != "b" {
			t.Fatalf("%s on %q (%v), want b", name, n, err)
		}
	}

	create(pod("wrong-site", selector("site", "a"), withClaim("data")))
	_, err := schedule("wrong-site")
	if !errors.Is(err, controller.ErrRetry) || !strings.Contains(err.Error(), ReasonVolumeAffinity) {
		t.Fatalf("wrong-site: %v", err)
	}

	create(pod("no-claim", withClaim("nope")))
	if _, err := schedule("no-claim"); err == nil || !strings.Contains(err.Error(), `0/3 nodes are available: 3 persistentvolumeclaim "nope" not found.`) {
		t.Fatalf("no-claim: %v", err)
	}
	now := time.Now()
	deleting := testClaim("going", "vol-b")
	deleting.DeletionTimestamp = &now
	claims["default/going"] = deleting
	create(pod("claim-going", withClaim("going")))
	if _, err := schedule("claim-going"); err == nil || !strings.Contains(err.Error(), `persistentvolumeclaim "going" is being deleted`) {
		t.Fatalf("claim-going: %v", err)
	}
	// The claim appears: the pod is scheduled.
	claims["default/nope"] = testClaim("nope", "vol-b")
	c.VolumeChanged(nil, claims["default/nope"])
	pods["default/no-claim"] = storedPod(t, env.Store, "no-claim")
	if n, err := schedule("no-claim"); err != nil || n != "b" {
		t.Fatalf("no-claim after its claim was created: %q %v", n, err)
	}

	// An unbound WaitForFirstConsumer claim: its pods share a node.
	claims["default/fresh"] = testClaim("fresh", "")
	first := ""
	for i := range 4 {
		name := fmt.Sprintf("fresh-%d", i)
		create(pod(name, withClaim("fresh")))
		n, err := schedule(name)
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = n
		} else if n != first {
			t.Fatalf("%s on %s, the claim's first pod on %s", name, n, first)
		}
	}
	// An unbound claim of an Immediate class waits for its binding.
	imm := testClaim("immediate", "")
	cls := "manual"
	imm.Spec.StorageClassName = &cls
	claims["default/immediate"] = imm
	create(pod("imm", withClaim("immediate")))
	if _, err := schedule("imm"); err == nil || !strings.Contains(err.Error(), "pod has unbound immediate PersistentVolumeClaims") {
		t.Fatalf("imm: %v", err)
	}
}
