package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

func rolloutOf(t *testing.T, name, kind, target, version string) *manifests.Rollout {
	t.Helper()
	objs, err := manifests.Decode(fmt.Appendf(nil, `
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: %s}
spec:
  targetRef: {kind: %s, name: %s}
  template:
    metadata: {labels: {app: agent}, annotations: {version: %q}}
    spec: {containers: [{name: c, image: "fake://run"}]}
  waves: [{count: 1}, {}]
`, name, kind, target, version))
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].(*manifests.Rollout)
}

// TestOneRolloutPerTarget: a second Rollout of a target whose Rollout is
// unfinished is refused with Conflict and not stored; the first one may
// still be updated; once it completed, a new one is accepted.
func TestOneRolloutPerTarget(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	res, a, err := e.c.Apply(ctx, rolloutOf(t, "a", "DaemonSet", "agent", "2"))
	if err != nil || res != client.ResultCreated {
		t.Fatalf("apply a: %s %v", res, err)
	}
	aRev := a.GetObjectMeta().ResourceVersion

	for _, phase := range []string{"", manifests.RolloutProgressing, manifests.RolloutPaused} {
		if phase != "" {
			cur, err := e.st.Get(ctx, "rollouts", "default", "a")
			if err != nil {
				t.Fatal(err)
			}
			cur.(*manifests.Rollout).Status.Phase = phase
			up, err := e.st.Update(ctx, cur)
			if err != nil {
				t.Fatal(err)
			}
			aRev = up.GetObjectMeta().ResourceVersion
		}
		want := phase
		if want == "" {
			want = "Pending"
		}
		_, _, err = e.c.Apply(ctx, rolloutOf(t, "b", "DaemonSet", "agent", "3"))
		wantCode(t, err, client.CodeConflict, fmt.Sprintf(`rollout "b": daemonset "agent" is already being rolled out by rollout "a" (%s); delete it or wait until it completes`, want))
		if _, err := e.c.Get(ctx, "rollouts", "default", "b"); !client.IsNotFound(err) {
			t.Fatalf("refused rollout stored: %v", err)
		}
		got, err := e.c.Get(ctx, "rollouts", "default", "a")
		if err != nil {
			t.Fatal(err)
		}
		if got.GetObjectMeta().ResourceVersion != aRev || got.(*manifests.Rollout).Status.Phase != phase {
			t.Fatalf("rollout a changed: rv %s phase %q", got.GetObjectMeta().ResourceVersion, got.(*manifests.Rollout).Status.Phase)
		}
	}

	// The first rollout's own object may be updated (here: paused).
	upd := rolloutOf(t, "a", "DaemonSet", "agent", "2")
	upd.Spec.Paused = true
	if res, _, err := e.c.Apply(ctx, upd); err != nil || res != client.ResultConfigured {
		t.Fatalf("update a: %s %v", res, err)
	}
	// Other targets are free: another DaemonSet, a Deployment of the same name.
	for _, r := range []*manifests.Rollout{rolloutOf(t, "c", "DaemonSet", "other", "2"), rolloutOf(t, "d", "Deployment", "agent", "2")} {
		if _, _, err := e.c.Apply(ctx, r); err != nil {
			t.Fatalf("apply %s: %v", r.Name, err)
		}
	}

	// Once a completed, b is accepted.
	cur, err := e.st.Get(ctx, "rollouts", "default", "a")
	if err != nil {
		t.Fatal(err)
	}
	cur.(*manifests.Rollout).Status.Phase = manifests.RolloutCompleted
	if _, err := e.st.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if res, _, err := e.c.Apply(ctx, rolloutOf(t, "b", "DaemonSet", "agent", "3")); err != nil || res != client.ResultCreated {
		t.Fatalf("apply b after a completed: %s %v", res, err)
	}
}

// TestRolloutWaveSelectorRefusedForDeployment: the API refuses node
// selectors in the waves of a Deployment rollout, naming the field.
func TestRolloutWaveSelectorRefusedForDeployment(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	r := rolloutOf(t, "web", "Deployment", "web", "2")
	r.Spec.Waves[0].Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"site": "a"}}
	_, _, err := e.c.Apply(ctx, r)
	wantCode(t, err, client.CodeInvalid, "")
	if want := "spec.waves[0].selector: forbidden"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q lacks %q", err, want)
	}
	if _, err := e.c.Get(ctx, "rollouts", "default", "web"); !client.IsNotFound(err) {
		t.Fatalf("invalid rollout stored: %v", err)
	}
}
