package controllers

import (
	"context"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/daemonset"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/job"
	"github.com/edgeorch/edgeorch/controlplane/store"
)

// addDaemonSetAndJob adds the DaemonSet and Job controllers (and their
// informers) to parts; pods and nodeInf are the shared informers. It
// returns the DaemonSet and Job informers, for the other controllers to
// share.
func addDaemonSetAndJob(parts map[string]func(context.Context) error, st *store.Store, pods, nodeInf *controller.Informer, opts Options) (dsInf, jobInf *controller.Informer) {
	dsInf = controller.NewInformer(st, "daemonsets")
	jobInf = controller.NewInformer(st, "jobs")
	dsc := daemonset.New(st, dsInf, pods, nodeInf, events.NewRecorder(st, events.Options{Component: daemonset.Name, TTL: opts.EventTTL}))
	dsInf.AddHandler(dsc.DSChanged)
	pods.AddHandler(dsc.PodChanged)
	nodeInf.AddHandler(dsc.NodeChanged)
	jc := job.New(st, jobInf, pods, events.NewRecorder(st, events.Options{Component: job.Name, TTL: opts.EventTTL}), job.Options{Backoff: opts.JobBackoff})
	jobInf.AddHandler(jc.JobChanged)
	pods.AddHandler(jc.PodChanged)

	synced := func(ctx context.Context, infs ...*controller.Informer) error {
		for _, i := range infs {
			if err := i.WaitForSync(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	parts["daemonset informer"] = dsInf.Run
	parts["job informer"] = jobInf.Run
	parts["daemonset"] = func(ctx context.Context) error {
		if err := synced(ctx, dsInf, pods, nodeInf); err != nil {
			return nil // ctx done
		}
		dsc.Run(ctx, 2)
		return nil
	}
	parts["job"] = func(ctx context.Context) error {
		if err := synced(ctx, jobInf, pods); err != nil {
			return nil // ctx done
		}
		jc.Run(ctx, 2)
		return nil
	}
	return dsInf, jobInf
}
