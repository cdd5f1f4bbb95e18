package edgectl

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestStatefulSetTable(t *testing.T) {
	three := int32(3)
	ss := &manifests.StatefulSet{ObjectMeta: meta("default", "db", 2*time.Hour)}
	ss.Spec.Replicas = &three
	ss.Spec.Template = webTemplate("fake://run")
	ss.Status.ReadyReplicas = 2
	checkRows(t, tableText(t, "sts", []manifests.Object{ss}, tableOptions{Now: tableNow}),
		"NAME | READY | AGE",
		"db | 2/3 | 120m")
	checkRows(t, tableText(t, "statefulsets", []manifests.Object{ss}, tableOptions{Now: tableNow, Wide: true}),
		"NAME | READY | AGE | CONTAINERS | IMAGES",
		"db | 2/3 | 120m | web,sidecar | fake://run,fake://run")

	yes := true
	r := &manifests.ControllerRevision{ObjectMeta: meta("default", "db-5okvg7", time.Hour), Revision: 2}
	r.OwnerReferences = []manifests.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", Controller: &yes}}
	checkRows(t, tableText(t, "controllerrevisions", []manifests.Object{r}, tableOptions{Now: tableNow}),
		"NAME | CONTROLLER | REVISION | AGE",
		"db-5okvg7 | statefulset.apps/db | 2 | 60m")
}

func TestStatefulSetRolloutStatus(t *testing.T) {
	three, zero, one := int32(3), int32(0), int32(1)
	ss := &manifests.StatefulSet{ObjectMeta: manifests.ObjectMeta{Name: "db", Generation: 2}}
	ss.Spec.Replicas = &three
	ss.Spec.UpdateStrategy = manifests.StatefulSetUpdateStrategy{Type: "RollingUpdate", RollingUpdate: &manifests.RollingUpdateStatefulSetStrategy{Partition: &zero}}
	for _, tc := range []struct {
		observed       int64
		ready, updated int32
		partition      *int32
		want           string
		done           bool
	}{
		{1, 3, 3, &zero, "Waiting for statefulset spec update to be observed...", false},
		{2, 1, 1, &zero, "Waiting for 2 pods to be ready...", false},
		{2, 3, 1, &zero, "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated...", false},
		{2, 3, 2, &one, "partitioned roll out complete: 2 new pods have been updated...", true},
	} {
		ss.Status = manifests.StatefulSetStatus{ObservedGeneration: tc.observed, ReadyReplicas: tc.ready, UpdatedReplicas: tc.updated}
		ss.Spec.UpdateStrategy.RollingUpdate.Partition = tc.partition
		msg, done, err := rolloutStatus(ss, 0)
		if err != nil || msg != tc.want || done != tc.done {
			t.Errorf("%+v: %q %v %v, want %q %v", tc, msg, done, err, tc.want, tc.done)
		}
	}
	ss.Spec.UpdateStrategy = manifests.StatefulSetUpdateStrategy{Type: "OnDelete"}
	if _, _, err := rolloutStatus(ss, 0); err == nil || !strings.Contains(err.Error(), "only available for RollingUpdate") {
		t.Errorf("OnDelete: %v", err)
	}
}

func TestScaleStatefulSet(t *testing.T) {
	ss := &manifests.StatefulSet{}
	if err := scaleObject(ss, 4, -1); err != nil || *ss.Spec.Replicas != 4 {
		t.Fatalf("scale: %v %v", err, ss.Spec.Replicas)
	}
	if err := scaleObject(ss, 2, 3); err == nil || err.Error() != "expected replicas to be 3, was 4" {
		t.Errorf("precondition: %v", err)
	}
}
