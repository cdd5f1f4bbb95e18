// Package hpa is the HorizontalPodAutoscaler controller (autoscaling/v2,
// Resource metrics): every sync period it reads the usage the agents
// reported for the pods of each HPA's target (the edge-usage bucket, the
// same join as edgectl top), computes the desired replicas with
// Kubernetes' algorithm (ratio of the average utilization of the pods'
// requests to the target, 10 % tolerance, conservative handling of pods
// without figures or not ready), stabilises the recommendation over the
// behavior's windows, bounds it by the scaling policies and by min/max,
// and writes the target's spec.replicas with a compare-and-swap
// (SuccessfulRescale event). See docs/autoscaling.md.
package hpa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// Name is the controller's name, the source of its events.
const Name = "horizontal-pod-autoscaler"

// Event reasons (Kubernetes').
const (
	EventSuccessfulRescale            = "SuccessfulRescale"
	EventFailedRescale                = "FailedRescale"
	EventFailedGetScale               = "FailedGetScale"
	EventFailedGetResourceMetric      = "FailedGetResourceMetric"
	EventFailedComputeMetricsReplicas = "FailedComputeMetricsReplicas"
	EventSelectorRequired             = "SelectorRequired"
	EventInvalidSelector              = "InvalidSelector"
)

// Defaults of Options (Kubernetes' controller-manager flags).
const (
	DefaultSyncPeriod              = 15 * time.Second
	DefaultTolerance               = 0.1
	DefaultCPUInitializationPeriod = 5 * time.Minute
	DefaultInitialReadinessDelay   = 30 * time.Second
)

// Store is what the controller needs of the object store: the target is
// read and its spec.replicas written (compare-and-swap), the HPA's status
// written.
type Store interface {
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
}

// Lister is a read-only cache of one resource.
type Lister interface {
	Get(key string) (manifests.Object, bool)
	List(sel manifests.Selector) []manifests.Object
}

// Recorder records events.
type Recorder interface {
	Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error
}

// Usage reads the latest usage reports of the nodes
// (messaging.Buckets.Usage): one with Get, all with WatchFiltered.
type Usage interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	WatchFiltered(ctx context.Context, keys []string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

// usageGetMax is the number of nodes whose reports a sync reads with one
// get each; past it one watch of the bucket reads them all (as edgectl top).
const usageGetMax = 32

// Options tune the controller; zero values take the defaults.
type Options struct {
	// Now is the clock of the windows and policies (tests drive it).
	Now func() time.Time
	// SyncPeriod is how often every HPA is synced.
	SyncPeriod time.Duration
	// Tolerance is how far from 1 the usage ratio must be to act.
	Tolerance float64
	// CPUInitializationPeriod: CPU figures of a pod started less than
	// this ago count only once it is ready and a whole window has passed.
	CPUInitializationPeriod time.Duration
	// InitialReadinessDelay: a pod started longer ago that turned unready
	// within this of its start counts as never ready.
	InitialReadinessDelay time.Duration
}

// Controller reconciles HorizontalPodAutoscalers.
type Controller struct {
	st    Store
	hpas  Lister
	pods  Lister
	usage Usage
	rec   Recorder
	opts  Options
	queue *controller.Queue

	getMax int // usageGetMax; tests lower it

	mu      sync.Mutex
	history map[string]*history
}

// New returns a controller over the given caches. Register HPAChanged on
// the HPA cache.
func New(st Store, hpas, pods Lister, usage Usage, rec Recorder, opts Options) *Controller {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SyncPeriod <= 0 {
		opts.SyncPeriod = DefaultSyncPeriod
	}
	if opts.Tolerance <= 0 {
		opts.Tolerance = DefaultTolerance
	}
	if opts.CPUInitializationPeriod <= 0 {
		opts.CPUInitializationPeriod = DefaultCPUInitializationPeriod
	}
	if opts.InitialReadinessDelay <= 0 {
		opts.InitialReadinessDelay = DefaultInitialReadinessDelay
	}
	return &Controller{
		st: st, hpas: hpas, pods: pods, usage: usage, rec: rec, opts: opts,
		queue:   controller.NewQueue(time.Second, opts.SyncPeriod),
		history: map[string]*history{},
		getMax:  usageGetMax,
	}
}

// Run syncs every HPA each sync period, and a new or changed one at once,
// with workers workers, until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	go func() {
		t := time.NewTicker(c.opts.SyncPeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				for _, o := range c.hpas.List(manifests.Selector{}) {
					c.queue.Add(controller.Key(o))
				}
			}
		}
	}()
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	controller.RunNamedWorkers(ctx, "hpa", c.queue, workers, c.Sync)
}

// HPAChanged queues a new HPA or one whose spec changed (its own status
// writes are not a reason to sync before the next period, as in
// Kubernetes), and forgets a deleted one.
func (c *Controller) HPAChanged(old, cur manifests.Object) {
	if cur == nil {
		c.mu.Lock()
		delete(c.history, controller.Key(old))
		c.mu.Unlock()
		return
	}
	if old == nil || old.GetObjectMeta().Generation != cur.GetObjectMeta().Generation {
		c.queue.Add(controller.Key(cur))
	}
}

func (c *Controller) historyOf(key string) *history {
	h := c.history[key]
	if h == nil {
		h = &history{}
		c.history[key] = h
	}
	return h
}

// Sync reconciles the HPA under key once.
func (c *Controller) Sync(ctx context.Context, key string) error {
	obj, ok := c.hpas.Get(key)
	if !ok {
		c.mu.Lock()
		delete(c.history, key)
		c.mu.Unlock()
		return nil
	}
	cached, ok := obj.(*manifests.HorizontalPodAutoscaler)
	if !ok {
		return fmt.Errorf("hpa %s: cached object is a %T", key, obj)
	}
	h, err := controller.Copy(cached)
	if err != nil {
		return err
	}
	// One sync of a key at a time (the queue guarantees it); the lock
	// guards the history map against HPAChanged.
	c.mu.Lock()
	hist := c.historyOf(key)
	c.mu.Unlock()
	rerr := c.reconcile(ctx, h, hist, c.opts.Now())
	if manifests.EqualJSON(cached.Status, h.Status) {
		return rerr
	}
	_, err = c.st.Update(ctx, h)
	return errors.Join(rerr, controller.StatusWriteError(fmt.Sprintf("horizontalpodautoscaler %q", key), err))
}

// target is the scaled object as the HPA sees it: its scale subresource.
type target struct {
	kind     manifests.Kind
	obj      manifests.Object
	replicas int32
	selector *manifests.LabelSelector
}

// getTarget reads the target's spec.replicas and spec.selector, whatever
// its kind (Deployment, ReplicaSet, StatefulSet).
func (c *Controller) getTarget(ctx context.Context, h *manifests.HorizontalPodAutoscaler, k manifests.Kind) (*target, error) {
	obj, err := c.st.Get(ctx, k.Resource, h.Namespace, h.Spec.ScaleTargetRef.Name)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("read scale of %s %s: %w", k.Kind, h.Spec.ScaleTargetRef.Name, err)
	}
	var v struct {
		Spec struct {
			Replicas *int32                   `json:"replicas"`
			Selector *manifests.LabelSelector `json:"selector"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("read scale of %s %s: %w", k.Kind, h.Spec.ScaleTargetRef.Name, err)
	}
	t := &target{kind: k, obj: obj, replicas: 1, selector: v.Spec.Selector}
	if v.Spec.Replicas != nil {
		t.replicas = *v.Spec.Replicas
	}
	return t, nil
}

// scale writes n into the target's spec.replicas, with a compare-and-swap
// on the revision read.
func (c *Controller) scale(ctx context.Context, t *target, n int32) error {
	obj, err := withReplicas(t, n)
	if err != nil {
		return fmt.Errorf("set spec.replicas of %s %s: %w", t.kind.Kind, t.obj.GetObjectMeta().Name, err)
	}
	_, err = c.st.Update(ctx, obj)
	return err
}

// withReplicas returns a copy of the target with spec.replicas n (a JSON
// edit, so that any kind with the field works).
func withReplicas(t *target, n int32) (manifests.Object, error) {
	raw, err := json.Marshal(t.obj)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	var spec map[string]json.RawMessage
	if err := json.Unmarshal(m["spec"], &spec); err != nil {
		return nil, err
	}
	if spec["replicas"], err = json.Marshal(n); err != nil {
		return nil, err
	}
	if m["spec"], err = json.Marshal(spec); err != nil {
		return nil, err
	}
	if raw, err = json.Marshal(m); err != nil {
		return nil, err
	}
	obj := t.kind.New()
	if err := json.Unmarshal(raw, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// reconcile is Kubernetes' reconcileAutoscaler: it sets h's status and
// scales the target.
func (c *Controller) reconcile(ctx context.Context, h *manifests.HorizontalPodAutoscaler, hist *history, now time.Time) error {
	cond := func(typ, status, reason, format string, args ...any) {
		setCondition(h, typ, status, reason, fmt.Sprintf(format, args...), now)
	}
	ref := h.Spec.ScaleTargetRef
	reference := fmt.Sprintf("%s/%s", ref.Kind, ref.Name)
	gen := h.Generation
	h.Status.ObservedGeneration = &gen

	k, err := manifests.HPATargetKind(ref)
	if err != nil {
		err = fmt.Errorf("spec.scaleTargetRef.%w", err)
	}
	var t *target
	if err == nil {
		if t, err = c.getTarget(ctx, h, k); err != nil && !client.IsNotFound(err) {
			return fmt.Errorf("get scale of %s: %w", reference, err)
		}
	}
	if err != nil {
		cond(manifests.HPAAbleToScale, manifests.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: %v", err)
		c.event(ctx, h, manifests.EventWarning, EventFailedGetScale, "%v", err)
		h.Status.CurrentReplicas = 0
		h.Status.CurrentMetrics = nil
		return nil
	}
	cond(manifests.HPAAbleToScale, manifests.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	current := t.replicas
	if hist.recommendations == nil {
		// As Kubernetes: the current size counts as a recommendation, so
		// that a controller just started (or a new leader) does not scale
		// down before a whole window has passed.
		hist.recommendations = []recommendation{{current, now}}
	}
	minReplicas := int32(1)
	if h.Spec.MinReplicas != nil {
		minReplicas = *h.Spec.MinReplicas
	}
	var (
		desired  int32
		reason   string
		statuses []manifests.MetricStatus
		rescale  = true
	)
	switch {
	case current == 0 && minReplicas != 0:
		desired, rescale = 0, false
		cond(manifests.HPAScalingActive, manifests.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
	case current > h.Spec.MaxReplicas:
		reason, desired = "Current number of replicas above Spec.MaxReplicas", h.Spec.MaxReplicas
	case current < minReplicas:
		reason, desired = "Current number of replicas below Spec.MinReplicas", minReplicas
	default:
		proposal, metric, st, err := c.computeReplicas(ctx, h, t, now, cond)
		statuses = st
		if err != nil && proposal == -1 {
			h.Status.CurrentReplicas = current
			h.Status.CurrentMetrics = statuses
			c.event(ctx, h, manifests.EventWarning, EventFailedComputeMetricsReplicas, "%v", err)
			return nil
		}
		desired = proposal
		switch {
		case desired > current:
			reason = metric + " above target"
		case desired < current:
			reason = "All metrics below target"
		}
		var up, down *manifests.HPAScalingRules
		if b := h.Spec.Behavior; b != nil {
			up, down = b.ScaleUp, b.ScaleDown
		}
		desired = hist.normalize(normArgs{
			up: up, down: down, min: minReplicas, max: h.Spec.MaxReplicas,
			current: current, desired: desired, now: now,
			upWindow:   windowOf(up, manifests.DefaultScaleUpStabilization),
			downWindow: windowOf(down, manifests.DefaultScaleDownStabilization),
			condition:  cond,
		})
		rescale = desired != current
	}
	if rescale {
		if err := c.scale(ctx, t, desired); err != nil {
			if client.IsConflict(err) {
				// The target changed since it was read: read it again.
				return fmt.Errorf("rescale %s: %w", reference, controller.ErrRetry)
			}
			c.event(ctx, h, manifests.EventWarning, EventFailedRescale, "New size: %d; reason: %s; error: %v", desired, reason, err)
			cond(manifests.HPAAbleToScale, manifests.ConditionFalse, "FailedUpdateScale", "the HPA controller was unable to update the target scale: %v", err)
			h.Status.CurrentReplicas = current
			h.Status.CurrentMetrics = statuses
			return fmt.Errorf("rescale %s: %w", reference, err)
		}
		cond(manifests.HPAAbleToScale, manifests.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to %d", desired)
		c.event(ctx, h, manifests.EventNormal, EventSuccessfulRescale, "New size: %d; reason: %s", desired, reason)
		hist.recordScale(h.Spec.Behavior, current, desired, now)
		at := now.UTC().Truncate(time.Second)
		h.Status.LastScaleTime = &at
	} else {
		desired = current
	}
	h.Status.CurrentReplicas = current
	h.Status.DesiredReplicas = desired
	h.Status.CurrentMetrics = statuses
	return nil
}

// computeReplicas is Kubernetes' computeReplicasForMetrics: the largest
// proposal of the metrics that could be computed. It returns -1 and an
// error when no metric could be, or when some could not and the others
// propose a scale-down (Kubernetes does not scale down on partial data).
func (c *Controller) computeReplicas(ctx context.Context, h *manifests.HorizontalPodAutoscaler, t *target, now time.Time, cond func(typ, status, reason, format string, args ...any)) (int32, string, []manifests.MetricStatus, error) {
	if t.selector == nil {
		c.event(ctx, h, manifests.EventWarning, EventSelectorRequired, "selector is required")
		cond(manifests.HPAScalingActive, manifests.ConditionFalse, "InvalidSelector", "the HPA target's scale is missing a selector")
		return -1, "", nil, errors.New("selector is required")
	}
	sel, err := manifests.LabelSelectorAsSelector(t.selector)
	if err != nil {
		c.event(ctx, h, manifests.EventWarning, EventInvalidSelector, "couldn't convert selector into a corresponding internal selector object: %v", err)
		cond(manifests.HPAScalingActive, manifests.ConditionFalse, "InvalidSelector", "the HPA target's scale has an invalid selector: %v", err)
		return -1, "", nil, fmt.Errorf("invalid selector: %w", err)
	}
	var pods []*manifests.Pod
	for _, o := range c.pods.List(sel) {
		if p, ok := o.(*manifests.Pod); ok && p.Namespace == h.Namespace && sel.Matches(p.Labels) {
			pods = append(pods, p)
		}
	}
	reports, err := c.readReports(ctx, pods)
	if err != nil {
		return -1, "", nil, err
	}
	params := calcParams{now: now, tolerance: c.opts.Tolerance, cpuInitializationPeriod: c.opts.CPUInitializationPeriod, initialReadinessDelay: c.opts.InitialReadinessDelay}
	statuses := make([]manifests.MetricStatus, len(h.Spec.Metrics))
	var (
		replicas   int32
		metricName string
		invalid    int
		firstErr   error
		firstCond  [3]string
	)
	for i, m := range h.Spec.Metrics {
		proposal, name, status, err := c.computeMetric(m, t.replicas, pods, reports, params)
		if err != nil {
			if invalid == 0 {
				firstErr = err
				firstCond = [3]string{"FailedGetResourceMetric", "the HPA was unable to compute the replica count: %v", err.Error()}
			}
			c.event(ctx, h, manifests.EventWarning, EventFailedGetResourceMetric, "%v", err)
			invalid++
			continue
		}
		statuses[i] = status
		if replicas == 0 || proposal > replicas {
			replicas, metricName = proposal, name
		}
	}
	if invalid >= len(h.Spec.Metrics) || (invalid > 0 && replicas < t.replicas) {
		cond(manifests.HPAScalingActive, manifests.ConditionFalse, firstCond[0], firstCond[1], firstCond[2])
		return -1, "", compactStatuses(statuses), fmt.Errorf("invalid metrics (%d invalid out of %d), first error is: %w", invalid, len(h.Spec.Metrics), firstErr)
	}
	cond(manifests.HPAScalingActive, manifests.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from %s", metricName)
	return replicas, metricName, compactStatuses(statuses), nil
}

// compactStatuses drops the statuses of metrics that could not be read.
func compactStatuses(in []manifests.MetricStatus) []manifests.MetricStatus {
	var out []manifests.MetricStatus
	for _, s := range in {
		if s.Type != "" {
			out = append(out, s)
		}
	}
	return out
}

// computeMetric computes one metric's proposal.
func (c *Controller) computeMetric(m manifests.MetricSpec, current int32, pods []*manifests.Pod, reports map[string]*client.UsageReport, p calcParams) (int32, string, manifests.MetricStatus, error) {
	if m.Type != manifests.ResourceMetricSourceType || m.Resource == nil {
		return 0, "", manifests.MetricStatus{}, fmt.Errorf("metric type %q is not supported", m.Type)
	}
	res := m.Resource.Name
	metrics, err := resourceUsage(pods, reports, res)
	if err != nil {
		return 0, "", manifests.MetricStatus{}, fmt.Errorf("failed to get %s usage: unable to get metrics for resource %s: %w", res, res, err)
	}
	tg := m.Resource.Target
	switch {
	case tg.Type == manifests.UtilizationMetricType && tg.AverageUtilization != nil:
		n, util, raw, err := resourceReplicas(current, *tg.AverageUtilization, res, pods, metrics, p)
		if err != nil {
			return 0, "", manifests.MetricStatus{}, fmt.Errorf("failed to get %s utilization: %w", res, err)
		}
		avg := quantity(res, raw)
		return n, res + " resource utilization (percentage of request)", manifests.MetricStatus{
			Type: manifests.ResourceMetricSourceType,
			Resource: &manifests.ResourceMetricStatus{Name: res, Current: manifests.MetricValueStatus{
				AverageUtilization: &util, AverageValue: &avg}},
		}, nil
	case tg.Type == manifests.AverageValueMetricType && tg.AverageValue != nil:
		n, avgMilli, err := averageValueReplicas(current, tg.AverageValue.MilliValue(), res, pods, metrics, p)
		if err != nil {
			return 0, "", manifests.MetricStatus{}, fmt.Errorf("failed to get %s usage: %w", res, err)
		}
		avg := quantity(res, avgMilli)
		return n, res + " resource", manifests.MetricStatus{
			Type:     manifests.ResourceMetricSourceType,
			Resource: &manifests.ResourceMetricStatus{Name: res, Current: manifests.MetricValueStatus{AverageValue: &avg}},
		}, nil
	}
	return 0, "", manifests.MetricStatus{}, fmt.Errorf("invalid resource metric source: target type %q", tg.Type)
}

// readReports reads the usage report of each node the pods are bound to:
// one get per node for a few nodes, one watch of the bucket for many. An
// unreadable report counts as none.
func (c *Controller) readReports(ctx context.Context, pods []*manifests.Pod) (map[string]*client.UsageReport, error) {
	byKey := map[string]string{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			byKey[messaging.UsageKey(p.Spec.NodeName)] = p.Spec.NodeName
		}
	}
	out := map[string]*client.UsageReport{}
	add := func(node string, data []byte) {
		var r client.UsageReport
		if err := json.Unmarshal(data, &r); err == nil && r.Node.Metadata.Name == node {
			out[node] = &r
		}
	}
	if len(byKey) <= c.getMax {
		for key, node := range byKey {
			e, err := c.usage.Get(ctx, key)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read usage of node %s: %w", node, err)
			}
			add(node, e.Value())
		}
		return out, nil
	}
	w, err := c.usage.WatchFiltered(ctx, []string{messaging.UsageFilter()}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read usage: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read usage: the watch ended")
			}
			if e == nil { // every stored report seen
				return out, nil
			}
			if node, ok := byKey[e.Key()]; ok {
				add(node, e.Value())
			}
		}
	}
}

func (c *Controller) event(ctx context.Context, h *manifests.HorizontalPodAutoscaler, typ, reason, format string, args ...any) {
	if c.rec != nil {
		_ = c.rec.Eventf(ctx, h, typ, reason, format, args...)
	}
}

// setCondition sets a condition, keeping its transition time when its
// status does not change.
func setCondition(h *manifests.HorizontalPodAutoscaler, typ, status, reason, msg string, now time.Time) {
	if c := manifests.HPACondition(h, typ); c != nil {
		if c.Status != status {
			c.LastTransitionTime = now.UTC().Truncate(time.Second)
		}
		c.Status, c.Reason, c.Message = status, reason, msg
		return
	}
	h.Status.Conditions = append(h.Status.Conditions, manifests.HorizontalPodAutoscalerCondition{
		Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: now.UTC().Truncate(time.Second),
	})
}
