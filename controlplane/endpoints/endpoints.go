// Package endpoints is the Endpoints controller: for each Service with a
// selector it keeps an Endpoints object of the same name listing the IPs
// of the matching pods, ready ones under addresses and the others under
// notReadyAddresses, with the service's target ports resolved per pod.
// The Endpoints object goes away with its Service.
package endpoints

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name.
const Name = "endpoints-controller"

// Store is what the controller needs of the object store.
type Store interface {
	Create(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error)
}

// Lister is a read-only cache of one resource.
type Lister interface {
	Get(key string) (manifests.Object, bool)
	List(sel manifests.Selector) []manifests.Object
}

// Controller reconciles Endpoints with Services and pods.
type Controller struct {
	st        Store
	services  Lister
	pods      Lister
	endpoints Lister
	queue     *controller.Queue
}

// New returns a controller over the caches. Register ServiceChanged,
// PodChanged and EndpointsChanged as their handlers.
func New(st Store, services, pods, endpoints Lister) *Controller {
	return &Controller{st: st, services: services, pods: pods, endpoints: endpoints,
		queue: controller.NewQueue(50*time.Millisecond, 30*time.Second)}
}

// Run syncs with workers workers until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// ServiceChanged queues a changed Service.
func (c *Controller) ServiceChanged(old, cur manifests.Object) { c.queue.Add(keyOf(old, cur)) }

// EndpointsChanged queues the Service of a changed Endpoints object (so
// that one deleted or edited by hand is put back).
func (c *Controller) EndpointsChanged(old, cur manifests.Object) { c.queue.Add(keyOf(old, cur)) }

func keyOf(old, cur manifests.Object) string {
	if cur != nil {
		return controller.Key(cur)
	}
	return controller.Key(old)
}

// PodChanged queues the Services whose selector matches the pod before or
// after the change.
func (c *Controller) PodChanged(old, cur manifests.Object) {
	for _, o := range c.services.List(manifests.Selector{}) {
		svc := o.(*manifests.Service)
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		sel := manifests.SelectorFromSet(svc.Spec.Selector)
		for _, p := range []manifests.Object{old, cur} {
			if p != nil && p.GetObjectMeta().Namespace == svc.Namespace && sel.Matches(p.GetObjectMeta().Labels) {
				c.queue.Add(controller.Key(svc))
				break
			}
		}
	}
}

// Sync reconciles the Endpoints of the Service under key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	err := c.sync(ctx, key)
	if client.IsConflict(err) || client.CodeOf(err) == client.CodeExists {
		return fmt.Errorf("%w: %w", controller.ErrRetry, err)
	}
	return err
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := controller.SplitKey(key)
	cur, haveEP := c.endpoints.Get(key)
	o, ok := c.services.Get(key)
	if !ok || o.(*manifests.Service).DeletionTimestamp != nil {
		if !haveEP {
			return nil
		}
		rev, _ := strconv.ParseUint(cur.GetObjectMeta().ResourceVersion, 10, 64)
		_, err := c.st.Delete(ctx, "endpoints", ns, name, rev)
		if err != nil && !client.IsNotFound(err) {
			return fmt.Errorf("delete endpoints %s: %w", key, err)
		}
		return nil
	}
	svc := o.(*manifests.Service)
	if len(svc.Spec.Selector) == 0 || svc.Spec.Type == manifests.ServiceTypeExternalName {
		return nil // endpoints managed by hand, or none
	}
	var pods []*manifests.Pod
	sel := manifests.SelectorFromSet(svc.Spec.Selector)
	for _, p := range c.pods.List(sel) {
		if p.GetObjectMeta().Namespace == ns {
			pods = append(pods, p.(*manifests.Pod))
		}
	}
	subsets := Subsets(svc, pods)
	if haveEP {
		ep := cur.(*manifests.Endpoints)
		if reflect.DeepEqual(ep.Subsets, subsets) && reflect.DeepEqual(ep.Labels, svc.Labels) {
			return nil
		}
		next, err := controller.Copy(ep)
		if err != nil {
			return err
		}
		next.Subsets, next.Labels = subsets, svc.Labels
		if _, err := c.st.Update(ctx, next); err != nil {
			return fmt.Errorf("update endpoints %s: %w", key, err)
		}
		return nil
	}
	ep := &manifests.Endpoints{Subsets: subsets}
	ep.Name, ep.Namespace, ep.Labels = name, ns, svc.Labels
	manifests.Default(ep)
	if _, err := c.st.Create(ctx, ep); err != nil {
		return fmt.Errorf("create endpoints %s: %w", key, err)
	}
	return nil
}

// Subsets computes the endpoint subsets of svc from its pods: a pod with
// an IP that is not terminating nor finished is listed, as ready when its
// Ready condition is true (or the service publishes unready addresses);
// a pod lacking a named target port is left out of that port. Addresses
// sharing the same resolved ports share a subset. The result is sorted.
func Subsets(svc *manifests.Service, pods []*manifests.Pod) []manifests.EndpointSubset {
	type group struct {
		ports    []manifests.EndpointPort
		ready    []manifests.EndpointAddress
		notReady []manifests.EndpointAddress
	}
	groups := map[string]*group{}
	for _, p := range pods {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil || p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" {
			continue
		}
		var ports []manifests.EndpointPort
		for _, sp := range svc.Spec.Ports {
			port, ok := resolvePort(p, sp)
			if !ok {
				continue
			}
			ports = append(ports, manifests.EndpointPort{Name: sp.Name, Port: port, Protocol: sp.Protocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue
		}
		k := portsKey(ports)
		g := groups[k]
		if g == nil {
			g = &group{ports: ports}
			groups[k] = g
		}
		addr := address(p, svc.Name)
		if manifests.IsPodReady(p) || svc.Spec.PublishNotReadyAddresses {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []manifests.EndpointSubset
	for _, k := range keys {
		g := groups[k]
		sortAddrs(g.ready)
		sortAddrs(g.notReady)
		out = append(out, manifests.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	return out
}

// address is p's endpoint address in the Service named svc. Like
// Kubernetes, it carries the pod's hostname only in the Service its
// subdomain names (a StatefulSet's governing Service), so that another
// Service selecting the pod gives it no per-pod DNS name.
func address(p *manifests.Pod, svc string) manifests.EndpointAddress {
	a := manifests.EndpointAddress{
		IP:        p.Status.PodIP,
		TargetRef: &manifests.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
	}
	if p.Spec.NodeName != "" {
		node := p.Spec.NodeName
		a.NodeName = &node
	}
	if p.Spec.Hostname != "" && p.Spec.Subdomain == svc {
		a.Hostname = p.Spec.Hostname
	}
	return a
}

// resolvePort returns the pod port a service port targets: a number as
// is, a name looked up in the pod's containers' ports (same protocol).
func resolvePort(p *manifests.Pod, sp manifests.ServicePort) (int32, bool) {
	if !sp.TargetPort.IsString {
		if sp.TargetPort.IntVal == 0 {
			return sp.Port, true
		}
		return sp.TargetPort.IntVal, true
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			proto := cp.Protocol
			if proto == "" {
				proto = "TCP"
			}
			if cp.Name == sp.TargetPort.StrVal && proto == sp.Protocol {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func portsKey(ports []manifests.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d,", p.Name, p.Protocol, p.Port)
	}
	return b.String()
}

func sortAddrs(a []manifests.EndpointAddress) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].IP != a[j].IP {
			return a[i].IP < a[j].IP
		}
		return a[i].TargetRef.Name < a[j].TargetRef.Name
	})
}
