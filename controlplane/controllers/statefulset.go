package controllers

import (
	"context"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/statefulset"
	"github.com/edgeorch/edgeorch/controlplane/store"
)

// addStatefulSet adds the StatefulSet controller to parts, over the
// shared informers infs (by resource: statefulsets, pods,
// persistentvolumeclaims, controllerrevisions; their Run is already in
// parts).
func addStatefulSet(parts map[string]func(context.Context) error, st *store.Store, infs map[string]*controller.Informer, opts Options) {
	sets, pods := infs["statefulsets"], infs["pods"]
	if sets == nil || pods == nil {
		return
	}
	wait := []*controller.Informer{sets, pods}
	// The optional caches: a nil *Informer must stay a nil Lister.
	var claims, revs statefulset.Lister
	if inf := infs["persistentvolumeclaims"]; inf != nil {
		claims = inf
		wait = append(wait, inf)
	}
	if inf := infs["controllerrevisions"]; inf != nil {
		revs = inf
		wait = append(wait, inf)
	}
	c := statefulset.New(st, sets, pods, claims, revs, events.NewRecorder(st, events.Options{Component: statefulset.Name, TTL: opts.EventTTL}))
	sets.AddHandler(c.SetChanged)
	pods.AddHandler(c.PodChanged)
	if inf := infs["persistentvolumeclaims"]; inf != nil {
		inf.AddHandler(c.ClaimChanged)
	}
	parts["statefulset controller"] = func(ctx context.Context) error {
		for _, inf := range wait {
			if err := inf.WaitForSync(ctx); err != nil {
				return nil // ctx done
			}
		}
		c.Run(ctx, 2)
		return nil
	}
}
