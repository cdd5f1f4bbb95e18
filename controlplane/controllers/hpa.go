package controllers

import (
	"context"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/hpa"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
)

// addHPA adds the HorizontalPodAutoscaler controller (and the HPA
// informer) to parts; pods is the shared pod informer, b.Usage the bucket
// the agents' usage reports are kept in. It returns the HPA informer, for
// the other controllers (the garbage collector) to share.
func addHPA(parts map[string]func(context.Context) error, st *store.Store, b *messaging.Buckets, pods *controller.Informer, opts Options) *controller.Informer {
	hpaInf := controller.NewInformer(st, "horizontalpodautoscalers")
	c := hpa.New(st, hpaInf, pods, b.Usage, events.NewRecorder(st, events.Options{Component: hpa.Name, TTL: opts.EventTTL}), hpa.Options{})
	hpaInf.AddHandler(c.HPAChanged)
	parts["horizontalpodautoscalers informer"] = hpaInf.Run
	parts["horizontal pod autoscaler"] = func(ctx context.Context) error {
		for _, i := range []*controller.Informer{hpaInf, pods} {
			if err := i.WaitForSync(ctx); err != nil {
				return nil // ctx done
			}
		}
		c.Run(ctx, 2)
		return nil
	}
	return hpaInf
}
