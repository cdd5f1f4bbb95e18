package daemonset_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

// TestDaemonSetFollowsLabels runs a DaemonSet on a simulated fleet: its
// pods run on the labelled nodes, and follow a label being added and
// removed.
func TestDaemonSetFollowsLabels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{
		Nodes: 3,
		Labels: func(i int) map[string]string {
			if i < 2 {
				return map[string]string{"role": "gateway"}
			}
			return nil
		},
		HeartbeatInterval: 100 * time.Millisecond,
	})
	objs, err := manifests.Decode([]byte(`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: collector, namespace: default}
spec:
  selector: {matchLabels: {app: collector}}
  template:
    metadata: {labels: {app: collector}}
    spec:
      nodeSelector: {role: gateway}
      containers: [{name: c, image: "fake://run"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Client.Apply(ctx, objs[0]); err != nil {
		t.Fatal(err)
	}
	placed := func(want ...string) func() error {
		return func() error {
			list, _, err := c.Client.List(ctx, "pods", "default", "app=collector")
			if err != nil {
				return err
			}
			var got []string
			for _, o := range list {
				p := o.(*manifests.Pod)
				if p.Status.Phase != manifests.PodRunning {
					return fmt.Errorf("pod %s on %s is %q", p.Name, p.Spec.NodeName, p.Status.Phase)
				}
				got = append(got, p.Spec.NodeName)
			}
			sort.Strings(got)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				return fmt.Errorf("pods on %v, want %v", got, want)
			}
			for i := range c.Nodes() {
				n, err := c.Node(i).Running(ctx)
				if err != nil {
					return err
				}
				wantN := 0
				for _, w := range want {
					if w == sim.NodeName(i) {
						wantN = 1
					}
				}
				if n != wantN {
					return fmt.Errorf("node %d runs %d containers, want %d", i, n, wantN)
				}
			}
			return nil
		}
	}
	controllertest.Eventually(t, 20*time.Second, placed(sim.NodeName(0), sim.NodeName(1)))
	relabel := func(i int, role string) {
		t.Helper()
		obj, err := c.Client.Get(ctx, "nodes", "", sim.NodeName(i))
		if err != nil {
			t.Fatal(err)
		}
		n := obj.(*manifests.Node)
		if role == "" {
			delete(n.Labels, "role")
		} else {
			n.Labels["role"] = role
		}
		if _, err := c.Client.Update(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	relabel(2, "gateway")
	controllertest.Eventually(t, 20*time.Second, placed(sim.NodeName(0), sim.NodeName(1), sim.NodeName(2)))
	relabel(0, "")
	controllertest.Eventually(t, 20*time.Second, placed(sim.NodeName(1), sim.NodeName(2)))
	controllertest.Eventually(t, 20*time.Second, func() error {
		obj, err := c.Client.Get(ctx, "daemonsets", "default", "collector")
		if err != nil {
			return err
		}
		st := obj.(*manifests.DaemonSet).Status
		if st.DesiredNumberScheduled != 2 || st.CurrentNumberScheduled != 2 || st.NumberMisscheduled != 0 || st.UpdatedNumberScheduled != 2 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}
