// Package admission enforces LimitRange and ResourceQuota when objects are
// created, as Kubernetes' LimitRanger and ResourceQuota admission plugins
// do. It is installed in the store (store.SetAdmitter), so objects created
// by the API and by controllers pass the same checks.
package admission

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/edgeorch/edgeorch/client"
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

	// known holds the quota names seen per namespace. store.List builds
	// its snapshot from a KV watcher, which can miss a key that is being
	// updated at that very moment (a quota being charged by a concurrent
	// create); quotas are therefore also read by name, with a direct get.
	mu    sync.Mutex
	known map[string]map[string]bool
}

// New returns admission over st.
func New(st Store, log *slog.Logger) *Admission {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Admission{st: st, log: log, known: map[string]map[string]bool{}}
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
		a.learn(ns, q.Name)
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
	if q, ok := obj.(*manifests.ResourceQuota); ok {
		a.forget(q.Namespace, q.Name)
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

func (a *Admission) quotas(ctx context.Context, ns string) ([]*manifests.ResourceQuota, error) {
	objs, _, err := a.st.List(ctx, "resourcequotas", ns, manifests.Selector{})
	if err != nil {
		return nil, fmt.Errorf("list resourcequotas in %s: %w", ns, err)
	}
	out := make([]*manifests.ResourceQuota, 0, len(objs))
	seen := map[string]bool{}
	for _, o := range objs {
		out = append(out, o.(*manifests.ResourceQuota))
		seen[o.GetObjectMeta().Name] = true
	}
	a.mu.Lock()
	var extra []string
	for name := range a.known[ns] {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	if len(seen) > 0 && a.known[ns] == nil {
		a.known[ns] = map[string]bool{}
	}
	for name := range seen {
		a.known[ns][name] = true
	}
	a.mu.Unlock()
	for _, name := range extra {
		o, err := a.st.Get(ctx, "resourcequotas", ns, name)
		if client.CodeOf(err) == client.CodeNotFound {
			a.forget(ns, name)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read resourcequota %s/%s: %w", ns, name, err)
		}
		out = append(out, o.(*manifests.ResourceQuota))
	}
	return out, nil
}

func (a *Admission) learn(ns, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.known[ns] == nil {
		a.known[ns] = map[string]bool{}
	}
	a.known[ns][name] = true
}

func (a *Admission) forget(ns, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.known[ns], name)
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
