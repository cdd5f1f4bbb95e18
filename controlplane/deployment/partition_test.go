package deployment

import (
	"strconv"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// partitionSteps syncs and plays the ReplicaSet controller until nothing
// moves, checking at each step that the new ReplicaSet stays within the
// partition and the old ones keep replicas-partition. It returns the
// final sizes.
func (f *fixture) partitionSteps(name string, partition int32) string {
	f.t.Helper()
	prev := ""
	for step := 0; step < 30; step++ {
		f.sync(name)
		d := f.deployment(name)
		var newSize, oldSize int32
		for _, rs := range f.replicaSets() {
			if EqualIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
				newSize += rsReplicas(rs)
			} else {
				oldSize += rsReplicas(rs)
			}
		}
		if newSize > partition {
			f.t.Fatalf("step %d: new replicaset at %d > partition %d (%s)", step, newSize, partition, f.sizes())
		}
		if oldSize < dReplicas(d)-partition {
			f.t.Fatalf("step %d: old replicasets at %d < replicas-partition %d (%s)", step, oldSize, dReplicas(d)-partition, f.sizes())
		}
		f.runReplicaSets(nil)
		if got := f.sizes(); got == prev {
			return got
		}
		prev = f.sizes()
	}
	f.t.Fatalf("no steady state: %s", f.sizes())
	return ""
}

func (f *fixture) setPartition(name string, p int32, image string) {
	f.t.Helper()
	d := f.deployment(name)
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	if p < 0 {
		delete(d.Annotations, manifests.RolloutPartitionAnnotation)
	} else {
		d.Annotations[manifests.RolloutPartitionAnnotation] = strconv.Itoa(int(p))
	}
	if image != "" {
		d.Spec.Template.Spec.Containers[0].Image = image
	}
	f.update(d)
}

// TestPartitionHoldsTheRollout: a rollout.edge.io/partition caps the new
// ReplicaSet, keeps capacity on the old one, and does not run into the
// progress deadline while held; raising it resumes the rolling update.
func TestPartitionHoldsTheRollout(t *testing.T) {
	for _, tc := range []struct {
		name           string
		surge, unavail manifests.IntOrString
	}{
		{"surge", manifests.FromString("25%"), manifests.FromString("25%")},
		{"no-surge", manifests.FromInt(0), manifests.FromInt(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := newDeployment("web", 10, "fake://run")
			d.Spec.Strategy.RollingUpdate = &manifests.RollingUpdateDeployment{MaxSurge: &tc.surge, MaxUnavailable: &tc.unavail}
			ten := int32(10)
			d.Spec.ProgressDeadlineSeconds = &ten
			f.create(d)
			f.sync("web")
			f.runReplicaSets(nil)
			f.sync("web")

			f.setPartition("web", 3, "fake://run?v=2")
			if got := f.partitionSteps("web", 3); got != "1=7 2=3" {
				t.Fatalf("held at partition 3: %q, want 1=7 2=3", got)
			}
			c := getCondition(&f.deployment("web").Status, manifests.DeploymentProgressing)
			if c == nil || c.Reason != ReasonDeploymentPartitioned || c.Status != manifests.ConditionUnknown {
				t.Fatalf("progressing %+v", c)
			}
			// Held well past the progress deadline: not timed out.
			f.now = f.now.Add(time.Minute)
			f.sync("web")
			if c := getCondition(&f.deployment("web").Status, manifests.DeploymentProgressing); c == nil || c.Reason != ReasonDeploymentPartitioned {
				t.Fatalf("progressing after the deadline %+v", c)
			}
			// The annotation is not copied to the ReplicaSets.
			for _, rs := range f.replicaSets() {
				if _, ok := rs.Annotations[manifests.RolloutPartitionAnnotation]; ok {
					t.Errorf("replicaset %s has the partition annotation", rs.Name)
				}
			}

			f.setPartition("web", 8, "")
			if got := f.partitionSteps("web", 8); got != "1=2 2=8" {
				t.Fatalf("held at partition 8: %q, want 1=2 2=8", got)
			}
			// Removing the partition completes the rollout.
			f.setPartition("web", -1, "")
			if got := f.partitionSteps("web", 10); got != "1=0 2=10" {
				t.Fatalf("released: %q", got)
			}
			f.sync("web")
			got := f.deployment("web")
			if !DeploymentComplete(got, &got.Status) {
				t.Fatalf("not complete: %+v", got.Status)
			}
			if c := getCondition(&got.Status, manifests.DeploymentProgressing); c == nil || c.Reason != ReasonNewReplicaSetAvailable {
				t.Fatalf("progressing %+v", c)
			}
		})
	}
}

// TestPartitionZeroAndLowered: partition 0 creates the new ReplicaSet
// empty; lowering the partition scales the new ReplicaSet back down.
func TestPartitionZeroAndLowered(t *testing.T) {
	f := newFixture(t)
	f.create(newDeployment("web", 4, "fake://run"))
	f.sync("web")
	f.runReplicaSets(nil)
	f.sync("web")
	f.setPartition("web", 0, "fake://run?v=2")
	if got := f.partitionSteps("web", 0); got != "1=4 2=0" {
		t.Fatalf("partition 0: %q", got)
	}
	f.setPartition("web", 3, "")
	if got := f.partitionSteps("web", 3); got != "1=1 2=3" {
		t.Fatalf("partition 3: %q", got)
	}
	f.setPartition("web", 1, "")
	f.sync("web")
	if got := f.sizes(); got != "1=1 2=1" {
		t.Fatalf("lowered to 1: %q", got)
	}
}
