package edgectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

// Annotations the rollout verbs read and write (Kubernetes' names).
const (
	changeCauseAnnotation = "kubernetes.io/change-cause"
	restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
	lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"
	// timedOutReason is the Progressing condition's reason once a
	// Deployment's progress deadline has passed.
	timedOutReason = "ProgressDeadlineExceeded"
)

// rollbackSkippedAnnotations are not copied from a ReplicaSet to its
// Deployment on undo (kubectl's annotationsToSkip).
var rollbackSkippedAnnotations = map[string]bool{
	lastAppliedAnnotation:                       true,
	manifests.RevisionAnnotation:                true,
	manifests.RevisionHistoryAnnotation:         true,
	manifests.DesiredReplicasAnnotation:         true,
	manifests.MaxReplicasAnnotation:             true,
	"deprecated.deployment.rollback.to":         true,
	"deployment.kubernetes.io/rollback-to-last": true,
}

func newRolloutCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout SUBCOMMAND",
		Short: "Manage the rollout of a Deployment, a DaemonSet or a fleet Rollout",
		Example: `  edgectl rollout status deployment/web
  edgectl rollout history deployment/web
  edgectl rollout undo deployment/web --to-revision=2
  edgectl rollout pause deployment/web
  edgectl rollout resume deployment/web
  edgectl rollout restart deployment/web
  edgectl rollout status rollout/probe-v2
  edgectl rollout pause rollout/probe-v2
  edgectl rollout resume rollout/probe-v2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newRolloutStatusCmd(o),
		newRolloutHistoryCmd(o),
		newRolloutUndoCmd(o),
		newRolloutPauseCmd(o, true),
		newRolloutPauseCmd(o, false),
		newRolloutRestartCmd(o),
	)
	return cmd
}

// parseWorkloadArg reads `KIND/NAME` or `KIND NAME` naming exactly one
// object of one of the allowed kinds.
func parseWorkloadArg(cmd *cobra.Command, args []string, allowed ...string) (manifests.Kind, string, error) {
	targets, _, err := parseResourceArgs(args)
	if err != nil {
		return manifests.Kind{}, "", usageErrorf(cmd, "%v", err)
	}
	if len(targets) != 1 || len(targets[0].Names) != 1 {
		return manifests.Kind{}, "", usageErrorf(cmd, "give exactly one object: KIND/NAME or KIND NAME")
	}
	k := targets[0].Kind
	for _, a := range allowed {
		if k.Kind == a {
			return k, targets[0].Names[0], nil
		}
	}
	return manifests.Kind{}, "", fmt.Errorf("no %s is implemented for %s; use %s", cmd.Name(), qualifiedResource(k), strings.ToLower(strings.Join(allowed, " or ")))
}

// qualifiedSingular is kubectl's group-qualified singular name, e.g.
// "deployment.apps" (just "pod" for the core group).
func qualifiedSingular(k manifests.Kind) string {
	if g, _, ok := strings.Cut(k.APIVersion, "/"); ok {
		return k.Singular + "." + g
	}
	return k.Singular
}

// qualifiedResource is the group-qualified plural, e.g. "deployments.apps".
func qualifiedResource(k manifests.Kind) string {
	if g, _, ok := strings.Cut(k.APIVersion, "/"); ok {
		return k.Resource + "." + g
	}
	return k.Resource
}

// ---- status ----

type rolloutStatusOptions struct {
	*options
	timeout  time.Duration
	watch    bool
	revision int64
}

func newRolloutStatusCmd(o *options) *cobra.Command {
	s := &rolloutStatusOptions{options: o}
	cmd := &cobra.Command{
		Use:   "status (deployment|daemonset|statefulset|rollout)/NAME",
		Short: "Show the status of a rollout, waiting until it finishes",
		Long: `Show the status of a rollout. By default it watches the object and prints
a line whenever the progress changes, until the rollout finishes (exit 0), its
progress deadline is exceeded (exit 1) or --timeout passes (exit 1).`,
		Example: `  edgectl rollout status deployment/web
  edgectl rollout status daemonset/agent-probe --timeout=2m`,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := parseWorkloadArg(cmd, args, "Deployment", "DaemonSet", "StatefulSet", "Rollout")
			if err != nil {
				return err
			}
			return s.run(cmd.Context(), k, name)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&s.timeout, "timeout", 0, "how long to wait before giving up; 0 waits forever")
	f.BoolVarP(&s.watch, "watch", "w", true, "watch the rollout until it finishes")
	f.Int64Var(&s.revision, "revision", 0, "pin to a revision (deployments); fail if the rollout moves past it")
	return cmd
}

// rolloutStatus computes what rollout status prints for obj: the message,
// whether the rollout is done, and an error once it has failed.
func rolloutStatus(obj manifests.Object, revision int64) (string, bool, error) {
	switch v := obj.(type) {
	case *manifests.Deployment:
		return deploymentRolloutStatus(v, revision)
	case *manifests.DaemonSet:
		return daemonSetRolloutStatus(v)
	case *manifests.StatefulSet: // rollout_statefulset.go
		return statefulSetRolloutStatus(v)
	case *manifests.Rollout:
		return fleetRolloutStatus(v)
	}
	return "", false, fmt.Errorf("rollout status is not available for %s", objectName(obj))
}

// deploymentRolloutStatus is kubectl's DeploymentStatusViewer.
func deploymentRolloutStatus(d *manifests.Deployment, revision int64) (string, bool, error) {
	if revision > 0 {
		cur, err := strconv.ParseInt(d.Annotations[manifests.RevisionAnnotation], 10, 64)
		if err != nil {
			return "", false, fmt.Errorf("cannot get the revision of deployment %q: %w", d.Name, err)
		}
		if revision != cur {
			return "", false, fmt.Errorf("desired revision (%d) is different from the running revision (%d)", revision, cur)
		}
	}
	if d.Generation > d.Status.ObservedGeneration {
		return "Waiting for deployment spec update to be observed...", false, nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == manifests.DeploymentProgressing && c.Reason == timedOutReason {
			return "", false, fmt.Errorf("deployment %q exceeded its progress deadline", d.Name)
		}
	}
	st := d.Status
	if d.Spec.Replicas != nil && st.UpdatedReplicas < *d.Spec.Replicas {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", d.Name, st.UpdatedReplicas, *d.Spec.Replicas), false, nil
	}
	if st.Replicas > st.UpdatedReplicas {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", d.Name, st.Replicas-st.UpdatedReplicas), false, nil
	}
	if st.AvailableReplicas < st.UpdatedReplicas {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", d.Name, st.AvailableReplicas, st.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out", d.Name), true, nil
}

// daemonSetRolloutStatus is kubectl's DaemonSetStatusViewer.
func daemonSetRolloutStatus(ds *manifests.DaemonSet) (string, bool, error) {
	if t := ds.Spec.UpdateStrategy.Type; t != "" && t != manifests.RollingUpdateDaemonSetStrategyType {
		return "", true, fmt.Errorf("rollout status is only available for %s strategy type", manifests.RollingUpdateDaemonSetStrategyType)
	}
	if ds.Generation > ds.Status.ObservedGeneration {
		return "Waiting for daemon set spec update to be observed...", false, nil
	}
	st := ds.Status
	if st.UpdatedNumberScheduled < st.DesiredNumberScheduled {
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d out of %d new pods have been updated...", ds.Name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled), false, nil
	}
	if st.NumberAvailable < st.DesiredNumberScheduled {
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d of %d updated pods are available...", ds.Name, st.NumberAvailable, st.DesiredNumberScheduled), false, nil
	}
	return fmt.Sprintf("daemon set %q successfully rolled out", ds.Name), true, nil
}

// errRolloutTimeout is returned when --timeout passes first.
var errRolloutTimeout = errors.New("timed out waiting for the condition")

func (s *rolloutStatusOptions) run(ctx context.Context, k manifests.Kind, name string) error {
	cl, err := s.client(ctx)
	if err != nil {
		return err
	}
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	ns := namespaceFor(k, s.namespace)
	last := ""
	// check prints the progress when it changed; true once finished.
	check := func(obj manifests.Object) (bool, error) {
		msg, done, err := rolloutStatus(obj, s.revision)
		if msg != "" && msg != last { // a fleet rollout shows its waves also when it failed
			fmt.Fprintln(s.streams.Out, msg)
			last = msg
		}
		if err != nil {
			return false, err
		}
		return done, nil
	}
	rctx, cancel := s.reqCtx(ctx)
	obj, err := cl.Get(rctx, k.Resource, ns, name)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return errRolloutTimeout
		}
		return err
	}
	if done, err := check(obj); err != nil || done || !s.watch {
		return err
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	events, err := cl.Watch(wctx, k.Resource, ns, "")
	if err != nil {
		if ctx.Err() != nil {
			return errRolloutTimeout
		}
		return err
	}
	// An event lost while the connection was down must not stall the
	// wait: the object is also read again now and then.
	tick := time.NewTicker(rolloutResync)
	defer tick.Stop()
	lastRV := resourceVersion(obj)
	for {
		var next manifests.Object
		select {
		case <-ctx.Done():
			return errRolloutTimeout
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return errRolloutTimeout
				}
				return fmt.Errorf("watch of %s %q ended", k.Resource, name)
			}
			if ev.Object == nil || ev.Object.GetObjectMeta().Name != name {
				continue
			}
			if ev.Type == client.Deleted {
				return fmt.Errorf("object has been deleted")
			}
			next = ev.Object
		case <-tick.C:
			rctx, cancel := s.reqCtx(ctx)
			o, err := cl.Get(rctx, k.Resource, ns, name)
			cancel()
			if client.IsNotFound(err) {
				return fmt.Errorf("object has been deleted")
			}
			if err != nil {
				continue // again at the next event or tick
			}
			next = o
		}
		// Events and reads may arrive out of order: never go back.
		if rv := resourceVersion(next); rv < lastRV {
			continue
		} else {
			lastRV = rv
		}
		if done, err := check(next); err != nil || done {
			return err
		}
	}
}

// rolloutResync is how often rollout status reads the object besides
// watching it.
const rolloutResync = 2 * time.Second

// resourceVersion is obj's resourceVersion as a number (0 if it is none).
func resourceVersion(obj manifests.Object) uint64 {
	v, _ := strconv.ParseUint(obj.GetObjectMeta().ResourceVersion, 10, 64)
	return v
}

// ---- history ----

type rolloutHistoryOptions struct {
	*options
	revision int64
}

func newRolloutHistoryCmd(o *options) *cobra.Command {
	h := &rolloutHistoryOptions{options: o}
	cmd := &cobra.Command{
		Use:   "history deployment/NAME [--revision=N]",
		Short: "Show the revisions of a Deployment",
		Example: `  edgectl rollout history deployment/web
  edgectl rollout history deployment/web --revision=3`,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := parseWorkloadArg(cmd, args, "Deployment")
			if err != nil {
				return err
			}
			return h.run(cmd.Context(), k, name)
		},
	}
	cmd.Flags().Int64Var(&h.revision, "revision", 0, "show the pod template of this revision")
	return cmd
}

// revisionEntry is one revision of a Deployment: the ReplicaSet holding it.
type revisionEntry struct {
	revision int64
	rs       *manifests.ReplicaSet
}

// deploymentHistory returns the revisions of d from its ReplicaSets, oldest
// first. A ReplicaSet brought back by an undo also answers for the earlier
// revisions in its revision-history annotation.
func deploymentHistory(d *manifests.Deployment, sets []manifests.Object) []revisionEntry {
	var out []revisionEntry
	for _, obj := range sets {
		rs, ok := obj.(*manifests.ReplicaSet)
		if !ok {
			continue
		}
		if ref := manifests.GetControllerOf(rs); ref == nil || ref.UID != d.UID {
			continue
		}
		rev, err := strconv.ParseInt(rs.Annotations[manifests.RevisionAnnotation], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, revisionEntry{revision: rev, rs: rs})
		for _, h := range strings.Split(rs.Annotations[manifests.RevisionHistoryAnnotation], ",") {
			if old, err := strconv.ParseInt(strings.TrimSpace(h), 10, 64); err == nil && old != rev {
				out = append(out, revisionEntry{revision: old, rs: rs})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].revision < out[j].revision })
	return out
}

// deploymentAndSets reads a Deployment and the ReplicaSets of its namespace.
func (o *options) deploymentAndSets(ctx context.Context, cl *client.Client, k manifests.Kind, name string) (*manifests.Deployment, []manifests.Object, error) {
	ns := namespaceFor(k, o.namespace)
	rctx, cancel := o.reqCtx(ctx)
	obj, err := cl.Get(rctx, k.Resource, ns, name)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	d, ok := obj.(*manifests.Deployment)
	if !ok {
		return nil, nil, fmt.Errorf("%s is a %T, not a Deployment", name, obj)
	}
	rctx, cancel = o.reqCtx(ctx)
	sets, _, err := cl.List(rctx, "replicasets", ns, "")
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("list replicasets: %w", err)
	}
	return d, sets, nil
}

func (h *rolloutHistoryOptions) run(ctx context.Context, k manifests.Kind, name string) error {
	cl, err := h.client(ctx)
	if err != nil {
		return err
	}
	d, sets, err := h.deploymentAndSets(ctx, cl, k, name)
	if err != nil {
		return err
	}
	hist := deploymentHistory(d, sets)
	qname := qualifiedSingular(k) + "/" + name
	if h.revision > 0 {
		for _, e := range hist {
			if e.revision == h.revision {
				fmt.Fprintf(h.streams.Out, "%s with revision #%d\n", qname, e.revision)
				return printPodTemplate(h.streams.Out, &e.rs.Spec.Template)
			}
		}
		return fmt.Errorf("unable to find the specified revision")
	}
	return printHistory(h.streams.Out, qname, hist)
}

// printHistory writes kubectl's REVISION CHANGE-CAUSE table.
func printHistory(w io.Writer, qname string, hist []revisionEntry) error {
	fmt.Fprintln(w, qname)
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "REVISION\tCHANGE-CAUSE")
	for _, e := range hist {
		fmt.Fprintf(tw, "%d\t%s\n", e.revision, orNone(e.rs.Annotations[changeCauseAnnotation]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

// printPodTemplate writes a pod template as kubectl's describe does.
func printPodTemplate(w io.Writer, t *manifests.PodTemplateSpec) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "Pod Template:")
	fmt.Fprintf(tw, "  Labels:\t%s\n", strings.ReplaceAll(labelsColumn(t.Labels), ",", "\n\t"))
	if len(t.Annotations) > 0 {
		fmt.Fprintf(tw, "  Annotations:\t%s\n", strings.ReplaceAll(labelsColumn(t.Annotations), ",", "\n\t"))
	}
	if t.Spec.RuntimeClassName != nil {
		fmt.Fprintf(tw, "  Runtime Class Name:\t%s\n", *t.Spec.RuntimeClassName)
	}
	fmt.Fprintln(tw, "  Containers:")
	for _, c := range t.Spec.Containers {
		fmt.Fprintf(tw, "   %s:\n", c.Name)
		fmt.Fprintf(tw, "    Image:\t%s\n", c.Image)
		for _, p := range c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "TCP"
			}
			fmt.Fprintf(tw, "    Port:\t%d/%s\n", p.ContainerPort, proto)
		}
		if len(c.Command) > 0 {
			fmt.Fprintf(tw, "    Command:\t%s\n", strings.Join(c.Command, " "))
		}
		if len(c.Args) > 0 {
			fmt.Fprintf(tw, "    Args:\t%s\n", strings.Join(c.Args, " "))
		}
		if len(c.Env) == 0 {
			fmt.Fprintln(tw, "    Environment:\t<none>")
		} else {
			fmt.Fprintln(tw, "    Environment:")
			for _, e := range c.Env {
				fmt.Fprintf(tw, "      %s:\t%s\n", e.Name, envValue(e))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

// ---- undo ----

type rolloutUndoOptions struct {
	*options
	toRevision int64
}

func newRolloutUndoCmd(o *options) *cobra.Command {
	u := &rolloutUndoOptions{options: o}
	cmd := &cobra.Command{
		Use:   "undo deployment/NAME [--to-revision=N]",
		Short: "Roll a Deployment back to an earlier revision",
		Long: `Roll a Deployment back: its pod template becomes that of an earlier revision
(the previous one by default), which starts a new rollout.`,
		Example: `  edgectl rollout undo deployment/web
  edgectl rollout undo deployment/web --to-revision=2`,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := parseWorkloadArg(cmd, args, "Deployment")
			if err != nil {
				return err
			}
			if u.toRevision < 0 {
				return usageErrorf(cmd, "--to-revision must be >= 0")
			}
			return u.run(cmd.Context(), k, name)
		},
	}
	cmd.Flags().Int64Var(&u.toRevision, "to-revision", 0, "the revision to roll back to; 0 is the previous one")
	return cmd
}

// errRollbackSkipped means the Deployment already has the wanted template.
type errRollbackSkipped struct{ revision int64 }

func (e errRollbackSkipped) Error() string {
	return fmt.Sprintf("skipped rollback (current template already matches revision %d)", e.revision)
}

// rollbackTarget finds the ReplicaSet of revision toRevision (0: the one
// before the newest) among d's.
func rollbackTarget(d *manifests.Deployment, sets []manifests.Object, toRevision int64) (*manifests.ReplicaSet, int64, error) {
	hist := deploymentHistory(d, sets)
	if toRevision > 0 {
		for _, e := range hist {
			if e.revision == toRevision {
				return e.rs, e.revision, nil
			}
		}
		return nil, 0, fmt.Errorf("unable to find specified revision %d in history", toRevision)
	}
	if len(hist) < 2 {
		return nil, 0, fmt.Errorf("no rollout history found for deployment %q", d.Name)
	}
	prev := hist[len(hist)-2]
	return prev.rs, prev.revision, nil
}

// applyRollback sets d's template (without the pod-template-hash label) and
// annotations from rs, as kubectl's rollback does; errRollbackSkipped when
// the template is already rs's.
func applyRollback(d *manifests.Deployment, rs *manifests.ReplicaSet, revision int64) error {
	tmpl := manifests.PodTemplateSpec{ObjectMeta: rs.Spec.Template.ObjectMeta, Spec: rs.Spec.Template.Spec}
	tmpl.Labels = maps.Clone(tmpl.Labels)
	delete(tmpl.Labels, manifests.DefaultDeploymentUniqueLabelKey)
	if len(tmpl.Labels) == 0 {
		tmpl.Labels = nil
	}
	if reflect.DeepEqual(tmpl, d.Spec.Template) || equalTemplatesJSON(&tmpl, &d.Spec.Template) {
		return errRollbackSkipped{revision: revision}
	}
	d.Spec.Template = tmpl
	ann := map[string]string{}
	for k := range rollbackSkippedAnnotations {
		if v, ok := d.Annotations[k]; ok {
			ann[k] = v
		}
	}
	for k, v := range rs.Annotations {
		if !rollbackSkippedAnnotations[k] {
			ann[k] = v
		}
	}
	if len(ann) == 0 {
		ann = nil
	}
	d.Annotations = ann
	return nil
}

func (u *rolloutUndoOptions) run(ctx context.Context, k manifests.Kind, name string) error {
	cl, err := u.client(ctx)
	if err != nil {
		return err
	}
	qname := qualifiedSingular(k) + "/" + name
	for try := 0; ; try++ {
		d, sets, err := u.deploymentAndSets(ctx, cl, k, name)
		if err != nil {
			return err
		}
		if d.Spec.Paused {
			return fmt.Errorf("you cannot rollback a paused deployment; resume it first with 'edgectl rollout resume %s' and try again", qname)
		}
		rs, rev, err := rollbackTarget(d, sets, u.toRevision)
		if err != nil {
			return err
		}
		var skipped errRollbackSkipped
		if err := applyRollback(d, rs, rev); errors.As(err, &skipped) {
			fmt.Fprintf(u.streams.Out, "%s %s\n", qname, skipped.Error())
			return nil
		} else if err != nil {
			return err
		}
		rctx, cancel := u.reqCtx(ctx)
		_, err = cl.Update(rctx, d)
		cancel()
		if client.IsConflict(err) && try < maxConflictRetries {
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(u.streams.Out, "%s rolled back\n", qname)
		return nil
	}
}

// maxConflictRetries bounds read-modify-write retries on Conflict.
const maxConflictRetries = 5

// updateObject reads an object, lets mutate change it and writes it back
// with a compare-and-swap, retrying on Conflict. mutate returning
// errNoChange skips the write.
func (o *options) updateObject(ctx context.Context, k manifests.Kind, name string, mutate func(manifests.Object) error) error {
	cl, err := o.client(ctx)
	if err != nil {
		return err
	}
	ns := namespaceFor(k, o.namespace)
	for try := 0; ; try++ {
		rctx, cancel := o.reqCtx(ctx)
		obj, err := cl.Get(rctx, k.Resource, ns, name)
		cancel()
		if err != nil {
			return err
		}
		if err := mutate(obj); err != nil {
			return err
		}
		rctx, cancel = o.reqCtx(ctx)
		_, err = cl.Update(rctx, obj)
		cancel()
		if client.IsConflict(err) && try < maxConflictRetries {
			continue
		}
		return err
	}
}

// ---- pause, resume, restart ----

func newRolloutPauseCmd(o *options, pause bool) *cobra.Command {
	verb, done, short := "pause", "paused", "Pause a Deployment (template changes do not roll out until resumed) or a fleet Rollout"
	if !pause {
		verb, done, short = "resume", "resumed", "Resume a paused Deployment or fleet Rollout"
	}
	return &cobra.Command{
		Use:     verb + " deployment/NAME | rollout/NAME",
		Short:   short,
		Example: "  edgectl rollout " + verb + " deployment/web\n  edgectl rollout " + verb + " rollout/probe-v2",
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := parseWorkloadArg(cmd, args, "Deployment", "Rollout")
			if err != nil {
				return err
			}
			err = o.updateObject(cmd.Context(), k, name, func(obj manifests.Object) error {
				if r, ok := obj.(*manifests.Rollout); ok {
					return pauseFleetRollout(r, pause, time.Now())
				}
				d, ok := obj.(*manifests.Deployment)
				if !ok {
					return fmt.Errorf("%s is a %T, not a Deployment", name, obj)
				}
				if d.Spec.Paused == pause {
					if pause {
						return fmt.Errorf("%s %q is already paused", qualifiedResource(k), name)
					}
					return fmt.Errorf("%s %q is not paused", qualifiedResource(k), name)
				}
				d.Spec.Paused = pause
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "%s/%s %s\n", qualifiedSingular(k), name, done)
			return nil
		},
	}
}

func newRolloutRestartCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "restart (deployment|daemonset|statefulset)/NAME",
		Short: "Replace every pod of a Deployment, DaemonSet or StatefulSet by a rollout",
		Long: `Restart sets the kubectl.kubernetes.io/restartedAt annotation of the pod
template to the current time, which rolls out new pods.`,
		Example: "  edgectl rollout restart deployment/web",
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := parseWorkloadArg(cmd, args, "Deployment", "DaemonSet", "StatefulSet")
			if err != nil {
				return err
			}
			now := time.Now().UTC().Format(time.RFC3339)
			err = o.updateObject(cmd.Context(), k, name, func(obj manifests.Object) error {
				var t *manifests.PodTemplateSpec
				switch v := obj.(type) {
				case *manifests.Deployment:
					if v.Spec.Paused {
						return fmt.Errorf("can't restart paused deployment (run rollout resume first)")
					}
					t = &v.Spec.Template
				case *manifests.DaemonSet:
					t = &v.Spec.Template
				case *manifests.StatefulSet:
					t = &v.Spec.Template
				default:
					return fmt.Errorf("%s is a %T", name, obj)
				}
				if t.Annotations == nil {
					t.Annotations = map[string]string{}
				}
				t.Annotations[restartedAtAnnotation] = now
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "%s/%s restarted\n", qualifiedSingular(k), name)
			return nil
		},
	}
}

// equalTemplatesJSON compares two templates by their JSON encoding (nil and
// empty maps or slices alike).
func equalTemplatesJSON(a, b *manifests.PodTemplateSpec) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
