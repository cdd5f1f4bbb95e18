package edgectl

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestDeploymentRolloutStatus(t *testing.T) {
	dep := func(gen, observed int64, replicas int32, st manifests.DeploymentStatus) *manifests.Deployment {
		d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Generation: gen}}
		d.Spec.Replicas = &replicas
		st.ObservedGeneration = observed
		d.Status = st
		return d
	}
	for _, tc := range []struct {
		name string
		d    *manifests.Deployment
		msg  string
		done bool
		err  string
	}{
		{"not observed", dep(3, 2, 6, manifests.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, AvailableReplicas: 6}),
			"Waiting for deployment spec update to be observed...", false, ""},
		{"updating", dep(2, 2, 6, manifests.DeploymentStatus{Replicas: 8, UpdatedReplicas: 2, AvailableReplicas: 5}),
			`Waiting for deployment "web" rollout to finish: 2 out of 6 new replicas have been updated...`, false, ""},
		{"old pending termination", dep(2, 2, 6, manifests.DeploymentStatus{Replicas: 7, UpdatedReplicas: 6, AvailableReplicas: 6}),
			`Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...`, false, ""},
		{"not available", dep(2, 2, 6, manifests.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, AvailableReplicas: 4}),
			`Waiting for deployment "web" rollout to finish: 4 of 6 updated replicas are available...`, false, ""},
		{"done", dep(2, 2, 6, manifests.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, ReadyReplicas: 6, AvailableReplicas: 6}),
			`deployment "web" successfully rolled out`, true, ""},
		{"scaled to zero", dep(1, 1, 0, manifests.DeploymentStatus{}),
			`deployment "web" successfully rolled out`, true, ""},
		{"deadline exceeded", dep(2, 2, 6, manifests.DeploymentStatus{Replicas: 6, UpdatedReplicas: 2, Conditions: []manifests.DeploymentCondition{
			{Type: manifests.DeploymentAvailable, Status: "True"},
			{Type: manifests.DeploymentProgressing, Status: "False", Reason: "ProgressDeadlineExceeded"},
		}}), "", false, `deployment "web" exceeded its progress deadline`},
		{"progressing", dep(2, 2, 6, manifests.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, AvailableReplicas: 6, Conditions: []manifests.DeploymentCondition{
			{Type: manifests.DeploymentProgressing, Status: "True", Reason: "NewReplicaSetAvailable"},
		}}), `deployment "web" successfully rolled out`, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, done, err := rolloutStatus(tc.d, 0)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || msg != tc.msg || done != tc.done {
				t.Fatalf("got %q, %v, %v; want %q, %v", msg, done, err, tc.msg, tc.done)
			}
		})
	}
	d := dep(1, 1, 1, manifests.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1})
	d.Annotations = map[string]string{manifests.RevisionAnnotation: "3"}
	if _, _, err := rolloutStatus(d, 2); err == nil || !strings.Contains(err.Error(), "desired revision (2) is different from the running revision (3)") {
		t.Errorf("pinned revision: %v", err)
	}
	if _, done, err := rolloutStatus(d, 3); !done || err != nil {
		t.Errorf("pinned current revision: %v %v", done, err)
	}
}

func TestDaemonSetRolloutStatus(t *testing.T) {
	ds := &manifests.DaemonSet{ObjectMeta: manifests.ObjectMeta{Name: "probe", Generation: 4}}
	ds.Spec.UpdateStrategy.Type = manifests.RollingUpdateDaemonSetStrategyType
	ds.Status = manifests.DaemonSetStatus{ObservedGeneration: 3}
	check := func(want string, wantDone bool) {
		t.Helper()
		msg, done, err := rolloutStatus(ds, 0)
		if err != nil || msg != want || done != wantDone {
			t.Errorf("got %q, %v, %v; want %q, %v", msg, done, err, want, wantDone)
		}
	}
	check("Waiting for daemon set spec update to be observed...", false)
	ds.Status = manifests.DaemonSetStatus{ObservedGeneration: 4, DesiredNumberScheduled: 5, UpdatedNumberScheduled: 2, NumberAvailable: 4}
	check(`Waiting for daemon set "probe" rollout to finish: 2 out of 5 new pods have been updated...`, false)
	ds.Status.UpdatedNumberScheduled = 5
	check(`Waiting for daemon set "probe" rollout to finish: 4 of 5 updated pods are available...`, false)
	ds.Status.NumberAvailable = 5
	check(`daemon set "probe" successfully rolled out`, true)
	ds.Spec.UpdateStrategy.Type = manifests.OnDeleteDaemonSetStrategyType
	if _, _, err := rolloutStatus(ds, 0); err == nil || !strings.Contains(err.Error(), "only available for RollingUpdate") {
		t.Errorf("OnDelete: %v", err)
	}
}

// historyFixture is a Deployment at revision 3 with ReplicaSets of
// revisions 1 (image v1), 2 (v2) and 3 (v3), plus another Deployment's set.
func historyFixture() (*manifests.Deployment, []manifests.Object) {
	tr := true
	d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-web", ResourceVersion: "9",
		Annotations: map[string]string{manifests.RevisionAnnotation: "3", changeCauseAnnotation: "set image v3", "team": "edge"}}}
	d.Spec.Template = webTemplate("fake://v3")
	rs := func(name, rev, image, cause, owner string) *manifests.ReplicaSet {
		r := &manifests.ReplicaSet{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default",
			Annotations:     map[string]string{manifests.RevisionAnnotation: rev},
			OwnerReferences: []manifests.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: owner, Controller: &tr}}}}
		if cause != "" {
			r.Annotations[changeCauseAnnotation] = cause
		}
		r.Spec.Template = webTemplate(image)
		r.Spec.Template.Labels = map[string]string{"app": "web", manifests.DefaultDeploymentUniqueLabelKey: name}
		return r
	}
	sets := []manifests.Object{
		rs("web-3", "3", "fake://v3", "set image v3", "uid-web"),
		rs("web-1", "1", "fake://v1", "", "uid-web"),
		rs("web-2", "2", "fake://v2", "set image v2", "uid-web"),
		rs("other-1", "7", "fake://other", "", "uid-other"),
	}
	return d, sets
}

func TestRolloutHistory(t *testing.T) {
	d, sets := historyFixture()
	hist := deploymentHistory(d, sets)
	var revs []int64
	for _, e := range hist {
		revs = append(revs, e.revision)
	}
	if len(revs) != 3 || revs[0] != 1 || revs[1] != 2 || revs[2] != 3 {
		t.Fatalf("revisions %v, want [1 2 3]", revs)
	}
	var buf bytes.Buffer
	if err := printHistory(&buf, "deployment.apps/web", hist); err != nil {
		t.Fatal(err)
	}
	want := "deployment.apps/web\nREVISION   CHANGE-CAUSE\n1          <none>\n2          set image v2\n3          set image v3\n\n"
	if buf.String() != want {
		t.Errorf("history:\n%q\nwant\n%q", buf.String(), want)
	}
	// A set brought back by an undo answers for its older revisions too.
	sets[1].(*manifests.ReplicaSet).Annotations[manifests.RevisionAnnotation] = "4"
	sets[1].(*manifests.ReplicaSet).Annotations[manifests.RevisionHistoryAnnotation] = "1"
	revs = nil
	for _, e := range deploymentHistory(d, sets) {
		revs = append(revs, e.revision)
	}
	if len(revs) != 4 || revs[0] != 1 || revs[3] != 4 {
		t.Errorf("revisions with history %v, want [1 2 3 4]", revs)
	}
	buf.Reset()
	if err := printPodTemplate(&buf, &sets[2].(*manifests.ReplicaSet).Spec.Template); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Pod Template:", "app=web", "pod-template-hash=web-2", "   web:", "Image:", "fake://v2", "Environment:"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("pod template lacks %q:\n%s", s, buf.String())
		}
	}
}

func TestRollback(t *testing.T) {
	d, sets := historyFixture()
	rs, rev, err := rollbackTarget(d, sets, 0)
	if err != nil || rev != 2 || rs.Name != "web-2" {
		t.Fatalf("previous revision: %v %d %v", rs, rev, err)
	}
	if err := applyRollback(d, rs, rev); err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "fake://v2" {
		t.Errorf("image after undo %q, want fake://v2", img)
	}
	if _, ok := d.Spec.Template.Labels[manifests.DefaultDeploymentUniqueLabelKey]; ok || d.Spec.Template.Labels["app"] != "web" {
		t.Errorf("template labels after undo %v: want app=web without pod-template-hash", d.Spec.Template.Labels)
	}
	if rs.Spec.Template.Labels[manifests.DefaultDeploymentUniqueLabelKey] != "web-2" {
		t.Errorf("undo changed the ReplicaSet's labels: %v", rs.Spec.Template.Labels)
	}
	// Annotations: the revision kept, the change cause taken from the set,
	// others not on the set dropped (as kubectl does).
	if d.Annotations[manifests.RevisionAnnotation] != "3" || d.Annotations[changeCauseAnnotation] != "set image v2" || d.Annotations["team"] != "" {
		t.Errorf("annotations after undo: %v", d.Annotations)
	}
	// Rolling back to the template it has now is skipped.
	var skipped errRollbackSkipped
	if err := applyRollback(d, rs, rev); !errors.As(err, &skipped) || skipped.revision != 2 {
		t.Errorf("second undo: %v, want skipped", err)
	}
	if _, _, err := rollbackTarget(d, sets, 9); err == nil || err.Error() != "unable to find specified revision 9 in history" {
		t.Errorf("missing revision: %v", err)
	}
	if rs, rev, err := rollbackTarget(d, sets, 1); err != nil || rev != 1 || rs.Name != "web-1" {
		t.Errorf("--to-revision=1: %v %d %v", rs, rev, err)
	}
	if _, _, err := rollbackTarget(d, sets[:1], 0); err == nil || !strings.Contains(err.Error(), "no rollout history found") {
		t.Errorf("single revision: %v", err)
	}
}

func TestScaleObject(t *testing.T) {
	d := &manifests.Deployment{}
	d.Spec.Replicas = i32(2)
	if err := scaleObject(d, 5, -1); err != nil || *d.Spec.Replicas != 5 {
		t.Fatalf("scale deployment: %v %d", err, *d.Spec.Replicas)
	}
	if err := scaleObject(d, 1, 4); err == nil || err.Error() != "expected replicas to be 4, was 5" || *d.Spec.Replicas != 5 {
		t.Errorf("precondition: %v, replicas %d", err, *d.Spec.Replicas)
	}
	rs := &manifests.ReplicaSet{}
	if err := scaleObject(rs, 0, 1); err != nil || *rs.Spec.Replicas != 0 {
		t.Errorf("scale replicaset (unset = 1): %v", err)
	}
	j := &manifests.Job{}
	if err := scaleObject(j, 3, -1); err != nil || *j.Spec.Parallelism != 3 {
		t.Errorf("scale job: %v", err)
	}
	if err := scaleObject(&manifests.DaemonSet{}, 3, -1); err == nil {
		t.Error("scale daemonset: want error")
	}
}

func TestRolloutArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"rollout", "status"}, "you must specify the type of resource"},
		{[]string{"rollout", "status", "pod/x"}, "no status is implemented for pods; use deployment or daemonset"},
		{[]string{"rollout", "undo", "daemonset/x"}, "no undo is implemented for daemonsets.apps; use deployment"},
		{[]string{"rollout", "history", "deploy/a", "deploy/b"}, "give exactly one object"},
		{[]string{"scale", "deploy/web"}, "the --replicas=COUNT flag is required"},
		{[]string{"scale", "deploy/web", "--replicas=-1"}, "must be >= 0"},
		{[]string{"scale", "ds/web", "--replicas=1"}, "no scale is implemented for daemonsets.apps"},
		{[]string{"delete", "deploy/web", "--cascade=sideways"}, `invalid --cascade "sideways"`},
	} {
		var out, errOut bytes.Buffer
		code := Run(t.Context(), append(tc.args, "--server", "nats://127.0.0.1:1"), IOStreams{Out: &out, ErrOut: &errOut})
		if code == 0 || !strings.Contains(errOut.String(), tc.err) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, errOut.String(), tc.err)
		}
	}
}

func TestParseCascade(t *testing.T) {
	for in, want := range map[string]string{
		"background": "Background", "Foreground": "Foreground", "orphan": "Orphan", "true": "Background", "false": "Orphan",
	} {
		if got, err := parseCascade(in); err != nil || got != want {
			t.Errorf("parseCascade(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := parseCascade(""); err == nil {
		t.Error(`parseCascade(""): want error`)
	}
}
