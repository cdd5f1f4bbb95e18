package controllers

import (
	"context"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/cronjob"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/store"
)

// addCronJob adds the CronJob controller (and the CronJob informer) to
// parts; jobInf is the shared Job informer. It returns the CronJob
// informer, for the other controllers (the garbage collector) to share.
func addCronJob(parts map[string]func(context.Context) error, st *store.Store, jobInf *controller.Informer, opts Options) *controller.Informer {
	cjInf := controller.NewInformer(st, "cronjobs")
	cjc := cronjob.New(st, cjInf, jobInf, events.NewRecorder(st, events.Options{Component: cronjob.Name, TTL: opts.EventTTL}), cronjob.Options{})
	cjInf.AddHandler(cjc.CronJobChanged)
	jobInf.AddHandler(cjc.JobChanged)
	parts["cronjob informer"] = cjInf.Run
	parts["cronjob"] = func(ctx context.Context) error {
		for _, i := range []*controller.Informer{cjInf, jobInf} {
			if err := i.WaitForSync(ctx); err != nil {
				return nil // ctx done
			}
		}
		cjc.Run(ctx, 1)
		return nil
	}
	return cjInf
}
