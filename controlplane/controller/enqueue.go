package controller

import "github.com/edgeorch/edgeorch/manifests"

// AddObject queues the key of a changed object: cur, or old when cur is
// nil (a deletion). It is the informer handler of a controller's own kind.
func (q *Queue) AddObject(old, cur manifests.Object) {
	if cur == nil {
		cur = old
	}
	q.Add(Key(cur))
}

// AddControllerOf queues the key of the controller of kind that owns old
// or cur (both, when the owner changed). It is the informer handler of the
// objects a controller makes (a DaemonSet's pods, a CronJob's Jobs).
func (q *Queue) AddControllerOf(kind string, old, cur manifests.Object) {
	for _, o := range []manifests.Object{old, cur} {
		if o == nil {
			continue
		}
		if ref := manifests.GetControllerOf(o); ref != nil && ref.Kind == kind {
			q.Add(o.GetObjectMeta().Namespace + "/" + ref.Name)
		}
	}
}
