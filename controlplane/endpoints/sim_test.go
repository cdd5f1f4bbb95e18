package endpoints_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

// On a simulated fleet a Service gets a cluster IP, nodes get pod CIDRs,
// and the Endpoints follow the pods' readiness: a pod whose container
// exits (and waits in restart backoff) moves to notReadyAddresses, a pod
// whose readiness probe fails is never ready, a deleted pod disappears,
// and the Endpoints go away with the Service.
func TestEndpointsFollowReadinessOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 2, HeartbeatInterval: 100 * time.Millisecond})

	controllertest.Eventually(t, 10*time.Second, func() error {
		seen := map[string]bool{}
		for i := range 2 {
			o, err := c.Client.Get(ctx, "nodes", "", sim.NodeName(i))
			if err != nil {
				return err
			}
			cidr := o.(*manifests.Node).Spec.PodCIDR
			if cidr == "" || seen[cidr] {
				return fmt.Errorf("node %s pod CIDR %q", sim.NodeName(i), cidr)
			}
			seen[cidr] = true
		}
		return nil
	})

	svc := &manifests.Service{Spec: manifests.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []manifests.ServicePort{{Name: "http", Port: 80, TargetPort: manifests.FromString("http")}},
	}}
	svc.Name = "web"
	_, obj, err := c.Client.Apply(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	if ip := obj.(*manifests.Service).Spec.ClusterIP; ip != "10.96.0.1" {
		t.Fatalf("cluster IP %q", ip)
	}
	pod := func(name, image, node string) *manifests.Pod {
		p := &manifests.Pod{}
		p.Name, p.Labels = name, map[string]string{"app": "web"}
		p.Spec.NodeName = node
		p.Spec.Containers = []manifests.Container{{Name: "web", Image: image,
			Ports: []manifests.ContainerPort{{Name: "http", ContainerPort: 8080}}}}
		return p
	}
	steady := pod("steady", "fake://run", sim.NodeName(0))
	flappy := pod("flappy", "fake://sleep/3s", sim.NodeName(1))
	probed := pod("probed", "fake://run", sim.NodeName(1))
	probed.Spec.Containers[0].ReadinessProbe = &manifests.Probe{
		Exec:          &manifests.ExecAction{Command: []string{"false"}},
		PeriodSeconds: 1,
	}
	for _, p := range []*manifests.Pod{steady, flappy, probed} {
		if _, _, err := c.Client.Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	podIP := func(name string) string {
		o, err := c.Client.Get(ctx, "pods", "default", name)
		if err != nil {
			return ""
		}
		return o.(*manifests.Pod).Status.PodIP
	}
	// want checks the endpoints: ready and not-ready pod names.
	want := func(ready, notReady []string) func() error {
		return func() error {
			o, err := c.Client.Get(ctx, "endpoints", "default", "web")
			if err != nil {
				return err
			}
			ep := o.(*manifests.Endpoints)
			var gotReady, gotNotReady []string
			for _, s := range ep.Subsets {
				if len(s.Ports) != 1 || s.Ports[0].Port != 8080 || s.Ports[0].Name != "http" {
					return fmt.Errorf("ports %+v", s.Ports)
				}
				for _, a := range s.Addresses {
					if a.IP == "" || a.IP != podIP(a.TargetRef.Name) || a.NodeName == nil {
						return fmt.Errorf("address %+v", a)
					}
					gotReady = append(gotReady, a.TargetRef.Name)
				}
				for _, a := range s.NotReadyAddresses {
					gotNotReady = append(gotNotReady, a.TargetRef.Name)
				}
			}
			slices.Sort(gotReady)
			slices.Sort(gotNotReady)
			if !slices.Equal(gotReady, ready) || !slices.Equal(gotNotReady, notReady) {
				return fmt.Errorf("ready %v not ready %v, want %v and %v", gotReady, gotNotReady, ready, notReady)
			}
			return nil
		}
	}
	controllertest.Eventually(t, 15*time.Second, want([]string{"flappy", "steady"}, []string{"probed"}))
	// flappy's container exits after 3s and waits in restart backoff.
	controllertest.Eventually(t, 15*time.Second, want([]string{"steady"}, []string{"flappy", "probed"}))

	if _, err := c.Client.Delete(ctx, "pods", "default", "probed"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 15*time.Second, func() error {
		err := want([]string{"steady"}, []string{"flappy"})()
		if err != nil {
			// flappy may be ready again meanwhile, after its restart.
			if err2 := want([]string{"flappy", "steady"}, nil)(); err2 == nil {
				return nil
			}
		}
		return err
	})

	if _, err := c.Client.Delete(ctx, "services", "default", "web"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, func() error {
		_, err := c.Client.Get(ctx, "endpoints", "default", "web")
		if client.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("endpoints still there: %v", err)
	})
}
