package controllers

import (
	"context"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/scheduler"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/controlplane/volume"
)

// addVolumeControllers adds the PersistentVolume controller (binder,
// local-path provisioner, reclaim, pvc-protection) and the claim, volume
// and class informers to parts, and makes the scheduler honour claims. It
// returns the informers by resource, for the other controllers to share.
func addVolumeControllers(parts map[string]func(context.Context) error, st *store.Store, pods, nodeInf *controller.Informer, sched *scheduler.Controller, opts Options) map[string]*controller.Informer {
	claims := controller.NewInformer(st, "persistentvolumeclaims")
	pvs := controller.NewInformer(st, "persistentvolumes")
	classes := controller.NewInformer(st, "storageclasses")
	vc := volume.New(st, volume.Listers{Pods: pods, Nodes: nodeInf, Claims: claims, Volumes: pvs, Classes: classes},
		events.NewRecorder(st, events.Options{Component: volume.Name, TTL: opts.EventTTL}))
	claims.AddHandler(vc.ClaimChanged)
	pvs.AddHandler(vc.VolumeChanged)
	classes.AddHandler(vc.ClassChanged)
	pods.AddHandler(vc.PodChanged)
	sched.SetVolumeListers(claims, pvs, classes)
	for _, inf := range []*controller.Informer{claims, pvs, classes} {
		inf.AddHandler(sched.VolumeChanged)
	}
	if run := parts["scheduler"]; run != nil {
		// No pod is judged before the claims are known.
		parts["scheduler"] = func(ctx context.Context) error {
			for _, i := range []*controller.Informer{claims, pvs, classes} {
				if err := i.WaitForSync(ctx); err != nil {
					return nil // ctx done
				}
			}
			return run(ctx)
		}
	}
	parts["persistentvolumeclaims informer"] = claims.Run
	parts["persistentvolumes informer"] = pvs.Run
	parts["storageclasses informer"] = classes.Run
	parts["persistentvolume controller"] = func(ctx context.Context) error {
		for _, i := range []*controller.Informer{claims, pvs, classes, pods, nodeInf} {
			if err := i.WaitForSync(ctx); err != nil {
				return nil // ctx done
			}
		}
		vc.Run(ctx)
		return nil
	}
	return map[string]*controller.Informer{"persistentvolumeclaims": claims, "persistentvolumes": pvs, "storageclasses": classes}
}
