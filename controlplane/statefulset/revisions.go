package statefulset

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// StatefulSet revisions are ControllerRevision objects named after the
// revision (<set>-<template hash>), owned by the set, holding its
// template; the newest gets the highest revision number.

// setRevisions returns the revisions ss controls, oldest first.
func (c *Controller) setRevisions(ss *manifests.StatefulSet) []*manifests.ControllerRevision {
	if c.revisions == nil {
		return nil
	}
	var out []*manifests.ControllerRevision
	for _, o := range c.revisions.List(manifests.Selector{}) {
		r := o.(*manifests.ControllerRevision)
		if r.Namespace != ss.Namespace {
			continue
		}
		if ref := manifests.GetControllerOf(r); ref == nil || ref.UID != ss.UID {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Revision != out[j].Revision {
			return out[i].Revision < out[j].Revision
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ensureRevision records ss's current template as the revision named
// updateRev, the newest one.
func (c *Controller) ensureRevision(ctx context.Context, ss *manifests.StatefulSet, updateRev string, revs []*manifests.ControllerRevision) error {
	if c.revisions == nil {
		return nil
	}
	var newest int64
	var have *manifests.ControllerRevision
	for _, r := range revs {
		newest = max(newest, r.Revision)
		if r.Name == updateRev {
			have = r
		}
	}
	if have != nil {
		if have.Revision == newest {
			return nil
		}
		// Back to an earlier template: that revision is the newest again.
		cp := manifests.DeepCopy(have).(*manifests.ControllerRevision)
		cp.Revision = newest + 1
		_, err := c.st.Update(ctx, cp)
		if client.IsConflict(err) {
			return fmt.Errorf("renumber revision %s: %w", updateRev, controller.ErrRetry)
		}
		if err != nil && !client.IsNotFound(err) {
			return fmt.Errorf("renumber revision %s: %w", updateRev, err)
		}
		return nil
	}
	ref, err := manifests.NewControllerRef(ss)
	if err != nil {
		return err
	}
	r := &manifests.ControllerRevision{
		TypeMeta: manifests.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            updateRev,
			Namespace:       ss.Namespace,
			Labels:          copyMap(ss.Spec.Template.Labels),
			OwnerReferences: []manifests.OwnerReference{ref},
		},
		Revision: newest + 1,
	}
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	r.Labels[manifests.ControllerRevisionHashLabel] = updateRev
	r.Data.Spec.Template = manifests.DeepCopy(&manifests.StatefulSet{Spec: manifests.StatefulSetSpec{Template: ss.Spec.Template}}).(*manifests.StatefulSet).Spec.Template
	_, err = c.st.Create(ctx, r)
	if err != nil && client.CodeOf(err) != client.CodeExists {
		return fmt.Errorf("create revision %s: %w", updateRev, err)
	}
	return nil
}

// revisionTemplate returns the template of the revision named rev.
func (c *Controller) revisionTemplate(ss *manifests.StatefulSet, rev string) (*manifests.PodTemplateSpec, bool) {
	if c.revisions == nil {
		return nil, false
	}
	o, ok := c.revisions.Get(ss.Namespace + "/" + rev)
	if !ok {
		return nil, false
	}
	r := o.(*manifests.ControllerRevision)
	if ref := manifests.GetControllerOf(r); ref == nil || ref.UID != ss.UID {
		return nil, false
	}
	t := r.Data.Spec.Template
	return &t, true
}

// pruneRevisions deletes the oldest revisions beyond
// revisionHistoryLimit, never the current or update revision or one a
// pod still has.
func (c *Controller) pruneRevisions(ctx context.Context, ss *manifests.StatefulSet, revs []*manifests.ControllerRevision, live map[string]bool) error {
	limit := 10
	if ss.Spec.RevisionHistoryLimit != nil {
		limit = int(*ss.Spec.RevisionHistoryLimit)
	}
	var old []*manifests.ControllerRevision
	for _, r := range revs {
		if !live[r.Name] {
			old = append(old, r)
		}
	}
	var errs []error
	for i := 0; i < len(old)-limit; i++ {
		_, err := c.st.Delete(ctx, "controllerrevisions", old[i].Namespace, old[i].Name, 0)
		if err != nil && !client.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete revision %s: %w", old[i].Name, err))
		}
	}
	return errors.Join(errs...)
}
