// Package admission enforces LimitRange and ResourceQuota when objects are
// created, as Kubernetes' LimitRanger and ResourceQuota admission plugins
// do. It is installed in the store (store.SetAdmitter), so objects created
// by the API and by controllers pass the same checks.
package admission

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// Store is what admission reads and writes.
type Store interface {
	List(ctx context.Context, resource, namespace string, sel manifests.Selector) ([]manifests.Object, uint64, error)
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
}

// maxAttempts bounds the compare-and-swap retries on a quota's status.
const maxAttempts = 50

// Admission implements store.Admitter.
type Admission struct {
	st  Store
	log *slog.Logger

	// cache, once synced, holds every LimitRange and ResourceQuota (Watch),
	// so that a create in a namespace without any reads nothing from the
	// store; until then they are listed from the store.
	cache atomic.Pointer[caches]

	// known holds, per "resource/namespace", the quota and LimitRange
	// names created through this admission and not yet seen in the cache
	// or in a store list. They are read by name.
	mu    sync.Mutex
	known map[string]map[string]time.Time // learnt at
	now   func() time.Time
}

// learntGrace is how long a learnt name not found in the store is kept:
// AdmitCreate learns a name before the store writes it.
const learntGrace = 10 * time.Second

type caches struct {
	limitRanges, quotas *controller.Informer
}

// Watch keeps the caches of LimitRanges and ResourceQuotas from w until
// ctx is done. Admission uses them once both have synced.
func (a *Admission) Watch(ctx context.Context, w controller.Watcher) error {
	c := &caches{limitRanges: controller.NewInformer(w, "limitranges"), quotas: controller.NewInformer(w, "resourcequotas")}
	errs := make(chan error, 2)
	for _, inf := range []*controller.Informer{c.limitRanges, c.quotas} {
		go func() { errs <- inf.Run(ctx) }()
	}
	for _, inf := range []*controller.Informer{c.limitRanges, c.quotas} {
		if err := inf.WaitForSync(ctx); err != nil {
			return fmt.Errorf("admission caches: %w", err)
		}
	}
	a.cache.Store(c)
	<-ctx.Done()
	a.cache.Store(nil)
	for range 2 {
		<-errs
	}
	return nil
}

func (a *Admission) cached() *caches { return a.cache.Load() }

// CacheSynced reports whether admission reads from its caches (Watch).
func (a *Admission) CacheSynced() bool { return a.cached() != nil }

// inNamespace returns the objects of inf in namespace ns.
func inNamespace(inf *controller.Informer, ns string) []manifests.Object {
	var out []manifests.Object
	for _, o := range inf.List(manifests.Selector{}) {
		if o.GetObjectMeta().Namespace == ns {
			out = append(out, o)
		}
	}
	return out
}

// New returns admission over st.
func New(st Store, log *slog.Logger) *Admission {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Admission{st: st, log: log, known: map[string]map[string]time.Time{}, now: time.Now}
}

func displayName(m *manifests.ObjectMeta) string {
	if m.Name != "" {
		return m.Name
	}
	return m.GenerateName
}

func forbidden(k manifests.Kind, m *manifests.ObjectMeta, format string, args ...any) error {
	return client.Errorf(client.CodeForbidden, "%s %q is forbidden: %s", k.Resource, displayName(m), fmt.Sprintf(format, args...))
}

// AdmitCreate applies LimitRanges to a pod, then charges every quota of
// the namespace that limits something obj uses.
func (a *Admission) AdmitCreate(ctx context.Context, obj manifests.Object) (func(context.Context), error) {
	meta := obj.GetObjectMeta()
	k, err := manifests.KindOf(obj)
	if err != nil || !k.Namespaced || meta.Namespace == "" {
		return nil, nil
	}
	ns := meta.Namespace
	if pod, ok := obj.(*manifests.Pod); ok {
		ranges, err := a.limitRanges(ctx, ns)
		if err != nil {
			return nil, err
		}
		if why := applyLimitRanges(pod, ranges); why != "" {
			return nil, forbidden(k, meta, "%s", why)
		}
		if len(ranges) > 0 {
			// Defaults may break request <= limit; validate what is stored.
			if err := manifests.Validate(pod); err != nil {
				return nil, client.Errorf(client.CodeInvalid, "%s %q is invalid after LimitRange defaults: %v", k.Resource, displayName(meta), err)
			}
		}
	}
	if q, ok := obj.(*manifests.ResourceQuota); ok {
		// A new quota starts with its usage counted from the store.
		used, err := a.usage(ctx, ns, q.Spec.Hard)
		if err != nil {
			return nil, err
		}
		q.Status = manifests.ResourceQuotaStatus{Hard: copyList(q.Spec.Hard), Used: used}
		if !store.IsDryRun(ctx) {
			a.learn("resourcequotas", ns, q.Name)
		}
	}
	if lr, ok := obj.(*manifests.LimitRange); ok && !store.IsDryRun(ctx) {
		a.learn("limitranges", ns, lr.Name)
	}
	quotas, err := a.quotas(ctx, ns)
	if err != nil || len(quotas) == 0 {
		return nil, err
	}
	delta := usageOf(k, obj)
	if len(delta) == 0 {
		return nil, nil
	}
	var charged []string
	undo := func(ctx context.Context) {
		for _, name := range charged {
			a.refund(ctx, ns, name, delta)
		}
	}
	for _, q := range quotas {
		if pod, ok := obj.(*manifests.Pod); ok {
			if missing := missingRequests(pod, q.Spec.Hard); missing != "" {
				undo(ctx)
				return nil, forbidden(k, meta, "failed quota: %s: must specify %s", q.Name, missing)
			}
		}
		did, err := a.charge(ctx, k, meta, q, delta)
		if err != nil {
			undo(ctx)
			return nil, err
		}
		if did {
			charged = append(charged, q.Name)
		}
	}
	if len(charged) == 0 {
		return nil, nil
	}
	return undo, nil
}

// charge adds delta to q's status.used by compare-and-swap, refusing when
// a hard limit would be passed. It reports whether q was charged.
func (a *Admission) charge(ctx context.Context, k manifests.Kind, meta *manifests.ObjectMeta, q *manifests.ResourceQuota, delta map[string]int64) (bool, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			cur, err := a.st.Get(ctx, "resourcequotas", q.Namespace, q.Name)
			if client.CodeOf(err) == client.CodeNotFound {
				return false, nil
			}
			if err != nil {
				return false, fmt.Errorf("admit %s: read quota %s: %w", displayName(meta), q.Name, err)
			}
			q = cur.(*manifests.ResourceQuota)
		}
		var names []string
		for _, n := range sorted(q.Spec.Hard) {
			if _, ok := delta[n]; ok {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return false, nil
		}
		used := copyList(q.Status.Used)
		if used == nil {
			used = manifests.ResourceList{}
		}
		var missing []string
		for _, n := range names {
			if _, ok := used[n]; !ok {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			counted, err := a.usage(ctx, q.Namespace, pick(q.Spec.Hard, missing))
			if err != nil {
				return false, err
			}
			for n, v := range counted {
				used[n] = v
			}
		}
		var over []string
		for _, n := range names {
			if used[n].MilliValue()+delta[n] > q.Spec.Hard[n].MilliValue() {
				over = append(over, n)
			}
		}
		if len(over) > 0 {
			var req, u, lim []string
			for _, n := range over {
				req = append(req, n+"="+string(formatQuantity(n, delta[n])))
				u = append(u, n+"="+string(formatQuantity(n, used[n].MilliValue())))
				lim = append(lim, n+"="+string(q.Spec.Hard[n]))
			}
			return false, forbidden(k, meta, "exceeded quota: %s, requested: %s, used: %s, limited: %s",
				q.Name, strings.Join(req, ","), strings.Join(u, ","), strings.Join(lim, ","))
		}
		if store.IsDryRun(ctx) {
			return false, nil // fits; a dry run charges nothing
		}
		for _, n := range names {
			used[n] = formatQuantity(n, used[n].MilliValue()+delta[n])
		}
		q.Status.Hard = copyList(q.Spec.Hard)
		q.Status.Used = used
		_, err := a.st.Update(ctx, q)
		switch client.CodeOf(err) {
		case "":
			return true, nil
		case client.CodeConflict:
			continue
		case client.CodeNotFound:
			return false, nil
		default:
			return false, fmt.Errorf("admit %s: charge quota %s: %w", displayName(meta), q.Name, err)
		}
	}
	return false, client.Errorf(client.CodeConflict, "%s %q: quota %s is too busy, try again", k.Resource, displayName(meta), q.Name)
}

// refund subtracts delta from quota name's status.used (not below 0).
func (a *Admission) refund(ctx context.Context, ns, name string, delta map[string]int64) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		cur, err := a.st.Get(ctx, "resourcequotas", ns, name)
		if err != nil {
			if client.CodeOf(err) != client.CodeNotFound {
				a.log.Warn("quota refund: read", "quota", ns+"/"+name, "err", err)
			}
			return
		}
		q := cur.(*manifests.ResourceQuota)
		changed := false
		for n, d := range delta {
			v, ok := q.Status.Used[n]
			if !ok {
				continue
			}
			q.Status.Used[n] = formatQuantity(n, max(0, v.MilliValue()-d))
			changed = true
		}
		if !changed {
			return
		}
		_, err = a.st.Update(ctx, q)
		if client.CodeOf(err) == client.CodeConflict {
			continue
		}
		if err != nil && client.CodeOf(err) != client.CodeNotFound {
			a.log.Warn("quota refund: write", "quota", ns+"/"+name, "err", err)
		}
		return
	}
}

// refundAll refunds what obj used from every quota of its namespace.
func (a *Admission) refundAll(ctx context.Context, obj manifests.Object) {
	k, err := manifests.KindOf(obj)
	if err != nil || !k.Namespaced || k.Resource == "resourcequotas" {
		return
	}
	delta := usageOf(k, obj)
	if len(delta) == 0 {
		return
	}
	ns := obj.GetObjectMeta().Namespace
	quotas, err := a.quotas(ctx, ns)
	if err != nil {
		a.log.Warn("quota refund: list", "namespace", ns, "err", err)
		return
	}
	for _, q := range quotas {
		a.refund(ctx, ns, q.Name, delta)
	}
}

// Deleted frees what a deleted object used (a terminal pod was freed when
// it finished).
func (a *Admission) Deleted(ctx context.Context, obj manifests.Object) {
	switch o := obj.(type) {
	case *manifests.ResourceQuota:
		a.forget("resourcequotas", o.Namespace, o.Name, false)
	case *manifests.LimitRange:
		a.forget("limitranges", o.Namespace, o.Name, false)
	}
	a.refundAll(ctx, obj)
}

// Updated frees what a pod used when it reaches Succeeded or Failed, and
// recounts a quota whose spec.hard changed.
func (a *Admission) Updated(ctx context.Context, old, obj manifests.Object) {
	switch n := obj.(type) {
	case *manifests.Pod:
		if o, ok := old.(*manifests.Pod); ok && !terminal(o) && terminal(n) {
			a.refundAll(ctx, o)
		}
	case *manifests.ResourceQuota:
		if sameList(n.Spec.Hard, n.Status.Hard) {
			return
		}
		for attempt := 0; attempt < maxAttempts; attempt++ {
			used, err := a.usage(ctx, n.Namespace, n.Spec.Hard)
			if err != nil {
				a.log.Warn("quota recount", "quota", n.Namespace+"/"+n.Name, "err", err)
				return
			}
			n.Status = manifests.ResourceQuotaStatus{Hard: copyList(n.Spec.Hard), Used: used}
			_, err = a.st.Update(ctx, n)
			if client.CodeOf(err) != client.CodeConflict {
				return
			}
			cur, err := a.st.Get(ctx, "resourcequotas", n.Namespace, n.Name)
			if err != nil {
				return
			}
			n = cur.(*manifests.ResourceQuota)
			if sameList(n.Spec.Hard, n.Status.Hard) {
				return
			}
		}
	}
}

func (a *Admission) limitRanges(ctx context.Context, ns string) ([]*manifests.LimitRange, error) {
	if c := a.cached(); c != nil {
		var out []*manifests.LimitRange
		seen := map[string]bool{}
		for _, o := range inNamespace(c.limitRanges, ns) {
			out = append(out, o.(*manifests.LimitRange))
			seen[o.GetObjectMeta().Name] = true
		}
		// Created here but not yet in the cache.
		for _, name := range a.knownNames("limitranges", ns, seen) {
			o, err := a.st.Get(ctx, "limitranges", ns, name)
			if client.CodeOf(err) == client.CodeNotFound {
				a.forget("limitranges", ns, name, true)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read limitrange %s/%s: %w", ns, name, err)
			}
			out = append(out, o.(*manifests.LimitRange))
		}
		return out, nil
	}
	objs, _, err := a.st.List(ctx, "limitranges", ns, manifests.Selector{})
	if err != nil {
		return nil, fmt.Errorf("list limitranges in %s: %w", ns, err)
	}
	out := make([]*manifests.LimitRange, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*manifests.LimitRange))
	}
	return out, nil
}

// quotas returns the namespace's quotas as stored now (their status is
// charged by compare-and-swap): the names come from the cache, or from a
// store list until it has synced, plus those created here meanwhile.
func (a *Admission) quotas(ctx context.Context, ns string) ([]*manifests.ResourceQuota, error) {
	seen := map[string]bool{}
	var out []*manifests.ResourceQuota
	if c := a.cached(); c != nil {
		for _, o := range inNamespace(c.quotas, ns) {
			seen[o.GetObjectMeta().Name] = true
		}
		for name := range seen {
			o, err := a.st.Get(ctx, "resourcequotas", ns, name)
			if client.CodeOf(err) == client.CodeNotFound {
				continue // deleted; the cache follows
			}
			if err != nil {
				return nil, fmt.Errorf("read resourcequota %s/%s: %w", ns, name, err)
			}
			out = append(out, o.(*manifests.ResourceQuota))
		}
	} else {
		objs, _, err := a.st.List(ctx, "resourcequotas", ns, manifests.Selector{})
		if err != nil {
			return nil, fmt.Errorf("list resourcequotas in %s: %w", ns, err)
		}
		for _, o := range objs {
			out = append(out, o.(*manifests.ResourceQuota))
			seen[o.GetObjectMeta().Name] = true
		}
	}
	for _, name := range a.knownNames("resourcequotas", ns, seen) {
		o, err := a.st.Get(ctx, "resourcequotas", ns, name)
		if client.CodeOf(err) == client.CodeNotFound {
			a.forget("resourcequotas", ns, name, true)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read resourcequota %s/%s: %w", ns, name, err)
		}
		out = append(out, o.(*manifests.ResourceQuota))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// learn records that resource ns/name was created through this admission,
// so that it is found before the cache (or a store list) shows it.
func (a *Admission) learn(resource, ns, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := resource + "/" + ns
	if a.known[k] == nil {
		a.known[k] = map[string]time.Time{}
	}
	a.known[k][name] = a.now()
}

// forget drops a learnt name; one not found in the store is kept while it
// may still be on its way there (learntGrace).
func (a *Admission) forget(resource, ns, name string, notFound bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := resource + "/" + ns
	if at, ok := a.known[k][name]; ok && notFound && a.now().Sub(at) < learntGrace {
		return
	}
	delete(a.known[k], name)
	if len(a.known[k]) == 0 {
		delete(a.known, k)
	}
}

// knownNames returns the names learnt for resource in ns that are not in
// seen. Once the cache holds a learnt name it is forgotten: the cache
// follows it from then on.
func (a *Admission) knownNames(resource, ns string, seen map[string]bool) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := resource + "/" + ns
	var out []string
	for name := range a.known[k] {
		if !seen[name] {
			out = append(out, name)
		} else if a.cached() != nil {
			delete(a.known[k], name)
		}
	}
	if len(a.known[k]) == 0 {
		delete(a.known, k)
	}
	return out
}

// usage counts, from the store, what namespace ns uses of each name in hard.
func (a *Admission) usage(ctx context.Context, ns string, hard manifests.ResourceList) (manifests.ResourceList, error) {
	milli := map[string]int64{}
	resources := map[string]bool{}
	for n := range hard {
		milli[n] = 0
		if r := manifests.QuotaCountResource(n); r != "" {
			resources[r] = true
		} else {
			resources["pods"] = true
		}
	}
	for r := range resources {
		k, err := manifests.KindForResource(r)
		if err != nil {
			return nil, err
		}
		objs, _, err := a.st.List(ctx, r, ns, manifests.Selector{})
		if err != nil {
			return nil, fmt.Errorf("count %s in %s: %w", r, ns, err)
		}
		for _, o := range objs {
			for n, v := range usageOf(k, o) {
				if _, ok := hard[n]; ok {
					milli[n] += v
				}
			}
		}
	}
	out := manifests.ResourceList{}
	for n, v := range milli {
		out[n] = formatQuantity(n, v)
	}
	return out, nil
}

func terminal(p *manifests.Pod) bool {
	return p.Status.Phase == manifests.PodSucceeded || p.Status.Phase == manifests.PodFailed
}

// usageOf is what obj counts against quotas, in thousandths of a unit.
func usageOf(k manifests.Kind, obj manifests.Object) map[string]int64 {
	out := map[string]int64{}
	group := ""
	if i := strings.Index(k.APIVersion, "/"); i >= 0 {
		group = k.APIVersion[:i]
	}
	if group == "" {
		out["count/"+k.Resource] = 1000
	} else {
		out["count/"+k.Resource+"."+group] = 1000
	}
	if _, ok := manifests.QuotaCountNames[k.Resource]; ok {
		out[k.Resource] = 1000
	}
	if pod, ok := obj.(*manifests.Pod); ok {
		if terminal(pod) {
			return nil
		}
		out["pods"] = 1000
		req, lim := podTotals(pod)
		for _, r := range []string{"cpu", "memory"} {
			out["requests."+r] = req[r].MilliValue()
			out[r] = req[r].MilliValue()
			out["limits."+r] = lim[r].MilliValue()
		}
	}
	return out
}

// missingRequests names the requests/limits a quota on compute needs but a
// container of pod does not set ("" when none).
func missingRequests(pod *manifests.Pod, hard manifests.ResourceList) string {
	var missing []string
	for _, r := range []string{"cpu", "memory"} {
		_, a := hard[r]
		_, b := hard["requests."+r]
		_, c := hard["limits."+r]
		for _, cs := range [][]manifests.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, ct := range cs {
				if _, ok := ct.Resources.Requests[r]; (a || b) && !ok {
					missing = appendOnce(missing, "requests."+r)
				}
				if _, ok := ct.Resources.Limits[r]; c && !ok {
					missing = appendOnce(missing, "limits."+r)
				}
			}
		}
	}
	return strings.Join(missing, ",")
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func copyList(l manifests.ResourceList) manifests.ResourceList {
	if l == nil {
		return nil
	}
	out := make(manifests.ResourceList, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}

func pick(l manifests.ResourceList, names []string) manifests.ResourceList {
	out := manifests.ResourceList{}
	for _, n := range names {
		out[n] = l[n]
	}
	return out
}

func sameList(a, b manifests.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Cmp(w) != 0 {
			return false
		}
	}
	return true
}
