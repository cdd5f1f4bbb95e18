package controllers

import (
	"context"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/endpoints"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/controlplane/nodeipam"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
)

// addServiceControllers adds the Endpoints controller and the node
// pod-CIDR controller (and the service and endpoints informers) to parts;
// pods and nodeInf are the shared informers. It returns the service and
// endpoints informers, for the other controllers to share.
func addServiceControllers(parts map[string]func(context.Context) error, st *store.Store, b *messaging.Buckets, pods, nodeInf *controller.Informer, opts Options) (svcInf, epInf *controller.Informer, err error) {
	cidr, mask := opts.ClusterCIDR, opts.NodeCIDRMaskSize
	if cidr == "" {
		cidr = ipam.DefaultClusterCIDR
	}
	if mask == 0 {
		mask = ipam.DefaultNodeMaskSize
	}
	alloc, err := ipam.NewPodCIDRs(b.Claims, cidr, mask)
	if err != nil {
		return nil, nil, err
	}
	svcInf = controller.NewInformer(st, "services")
	epInf = controller.NewInformer(st, "endpoints")
	epc := endpoints.New(st, svcInf, pods, epInf)
	svcInf.AddHandler(epc.ServiceChanged)
	epInf.AddHandler(epc.EndpointsChanged)
	pods.AddHandler(epc.PodChanged)
	nic := nodeipam.New(st, nodeInf, alloc)
	nodeInf.AddHandler(nic.NodeChanged)

	synced := func(ctx context.Context, infs ...*controller.Informer) error {
		for _, i := range infs {
			if err := i.WaitForSync(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	parts["service informer"] = svcInf.Run
	parts["endpoints informer"] = epInf.Run
	parts["endpoints"] = func(ctx context.Context) error {
		if err := synced(ctx, svcInf, epInf, pods); err != nil {
			return nil // ctx done
		}
		epc.Run(ctx, 2)
		return nil
	}
	parts["node ipam"] = func(ctx context.Context) error {
		if err := synced(ctx, nodeInf); err != nil {
			return nil // ctx done
		}
		nic.Run(ctx)
		return nil
	}
	return svcInf, epInf, nil
}
