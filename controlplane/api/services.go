package api

import (
	"context"
	"errors"

	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/manifests"
)

// allocate gives a Service being written (obj, over stored or nil on
// create) its cluster IP and node ports. It returns nil for other kinds or
// when the server has no allocator. The caller ends the allocation with
// settle once the write is done or failed.
func (s *Server) allocate(ctx context.Context, obj, stored manifests.Object) (*ipam.Allocation, error) {
	svc, ok := obj.(*manifests.Service)
	if !ok || s.opts.Services == nil {
		return nil, nil
	}
	old, _ := stored.(*manifests.Service)
	if keepsAddresses(svc, old) {
		return nil, nil
	}
	// Concurrent allocations (an apply of many Services) would all list
	// the services, pick the same free address and race for its claim:
	// one at a time, each claims the first free one.
	s.allocMu.Lock()
	a, err := s.opts.Services.Allocate(ctx, svc, old)
	s.allocMu.Unlock()
	var fe manifests.FieldErrors
	if errors.As(err, &fe) {
		return nil, invalid("Service", svc.Name, fe)
	}
	return a, err
}

// keepsAddresses gives svc, an update of old, old's cluster IP and reports
// true when that is all the allocator would do: both are ClusterIP
// services without node ports, and svc asks for no other cluster IP. Then
// the allocator, which lists every Service to check a requested address,
// is not needed: re-applying an unchanged Service stays cheap.
func keepsAddresses(svc, old *manifests.Service) bool {
	if old == nil || old.Spec.ClusterIP == "" || svc.Spec.Type != manifests.ServiceTypeClusterIP || old.Spec.Type != manifests.ServiceTypeClusterIP {
		return false
	}
	if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != old.Spec.ClusterIP {
		return false
	}
	for _, ports := range [][]manifests.ServicePort{svc.Spec.Ports, old.Spec.Ports} {
		for _, p := range ports {
			if p.NodePort != 0 {
				return false
			}
		}
	}
	svc.Spec.ClusterIP = old.Spec.ClusterIP
	svc.Spec.ClusterIPs = []string{old.Spec.ClusterIP}
	return true
}

// settle commits a (releasing what the previous version held) when the
// write succeeded, and undoes it otherwise.
func (s *Server) settle(ctx context.Context, a *ipam.Allocation, written bool) {
	if a == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var err error
	if written {
		err = a.Commit(ctx)
	} else {
		err = a.Undo(ctx)
	}
	if err != nil {
		s.log.Warn("settle service allocation", "err", err)
	}
}

// released frees the addresses of a Service that was deleted (not merely
// marked for deletion: the garbage collector finishes those, and their
// claims go stale once the service is gone).
func (s *Server) released(ctx context.Context, obj manifests.Object) {
	svc, ok := obj.(*manifests.Service)
	if !ok || s.opts.Services == nil || svc.DeletionTimestamp != nil {
		return
	}
	if err := s.opts.Services.Release(context.WithoutCancel(ctx), svc); err != nil {
		s.log.Warn("release service addresses", "service", svc.Namespace+"/"+svc.Name, "err", err)
	}
}
