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
	a, err := s.opts.Services.Allocate(ctx, svc, old)
	var fe manifests.FieldErrors
	if errors.As(err, &fe) {
		return nil, invalid("Service", svc.Name, fe)
	}
	return a, err
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
