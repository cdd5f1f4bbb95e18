package edgectl

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// tableOptions shape the human-readable table.
type tableOptions struct {
	Wide          bool
	WithNamespace bool // NAMESPACE column first (-A)
	WithKind      bool // NAME as kind/name (several kinds)
	ShowLabels    bool // LABELS column last (--show-labels)
	Now           time.Time
}

// newTabWriter aligns columns like kubectl's printer.
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
}

// tableHeaders returns the column names for kind k.
func tableHeaders(k manifests.Kind, o tableOptions) []string {
	var h []string
	switch k.Kind {
	case "Pod":
		h = []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
		if o.Wide {
			h = append(h, "IP", "NODE")
		}
	case "Node":
		h = []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"}
		if o.Wide {
			h = append(h, "INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME", "LAST-SEEN")
		}
	case "Namespace":
		h = []string{"NAME", "STATUS", "AGE"}
	case "ConfigMap":
		h = []string{"NAME", "DATA", "AGE"}
	case "Secret":
		h = []string{"NAME", "TYPE", "DATA", "AGE"}
	case "Event":
		h = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}
	case "Deployment", "ReplicaSet", "DaemonSet", "Job":
		h = workloadHeaders(k.Kind, o.Wide)
	case "Service":
		h = serviceHeaders(o.Wide)
	case "Endpoints":
		h = []string{"NAME", "ENDPOINTS", "AGE"}
	case "Rollout":
		h = rolloutHeaders()
	case "CronJob":
		h = cronJobHeaders(o.Wide)
	case "HorizontalPodAutoscaler":
		h = hpaHeaders()
	case "StatefulSet": // table_statefulsets.go
		h = statefulSetHeaders(o.Wide)
	case "ControllerRevision":
		h = controllerRevisionHeaders()
	case "ResourceQuota":
		h = quotaHeaders()
	case "LimitRange":
		h = limitRangeHeaders()
	case "PersistentVolume": // table_storage.go
		h = persistentVolumeHeaders()
	case "PersistentVolumeClaim":
		h = persistentVolumeClaimHeaders()
	case "StorageClass":
		h = storageClassHeaders()
	case "Ingress":
		h = ingressHeaders()
	case "Role", "ClusterRole": // table_rbac.go
		h = roleHeaders()
	case "RoleBinding", "ClusterRoleBinding":
		h = bindingHeaders(o.Wide)
	default:
		h = []string{"NAME", "AGE"}
	}
	if o.ShowLabels {
		h = append(h, "LABELS")
	}
	if o.WithNamespace && k.Namespaced {
		h = append([]string{"NAMESPACE"}, h...)
	}
	return h
}

// tableRow returns the cells of obj, matching tableHeaders.
func tableRow(obj manifests.Object, o tableOptions) []string {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	meta := obj.GetObjectMeta()
	k := kindOf(obj)
	name := meta.Name
	if o.WithKind {
		name = k.Singular + "/" + name
	}
	created := age(now, meta.CreationTimestamp)
	var row []string
	switch v := obj.(type) {
	case *manifests.Pod:
		s := summarizePod(v)
		row = []string{name, s.Ready, s.Status, restartsColumn(s, now), created}
		if o.Wide {
			row = append(row, orNone(v.Status.PodIP), orNone(v.Spec.NodeName))
		}
	case *manifests.Node:
		row = []string{name, nodeStatus(v), nodeRoles(v), created, orNone(v.Status.NodeInfo.KubeletVersion)}
		if o.Wide {
			row = append(row,
				orNone(nodeAddress(v, "InternalIP")),
				orUnknown(v.Status.NodeInfo.OSImage),
				orUnknown(v.Status.NodeInfo.KernelVersion),
				orUnknown(v.Status.NodeInfo.ContainerRuntimeVersion),
				nodeLastSeen(v, now))
		}
	case *manifests.Namespace:
		phase := v.Status.Phase
		if phase == "" {
			phase = "Active"
		}
		if v.DeletionTimestamp != nil {
			phase = "Terminating"
		}
		row = []string{name, phase, created}
	case *manifests.ConfigMap:
		row = []string{name, fmt.Sprint(len(v.Data) + len(v.BinaryData)), created}
	case *manifests.Secret:
		typ := v.Type
		if typ == "" {
			typ = "Opaque"
		}
		row = []string{name, typ, fmt.Sprint(len(v.Data)), created}
	case *manifests.Event:
		last := v.LastTimestamp
		if last.IsZero() {
			last = meta.CreationTimestamp
		}
		obj := strings.ToLower(v.InvolvedObject.Kind) + "/" + v.InvolvedObject.Name
		row = []string{age(now, last), v.Type, v.Reason, obj, v.Message}
	case *manifests.Deployment, *manifests.ReplicaSet, *manifests.DaemonSet, *manifests.Job:
		row = workloadRow(obj, name, created, now, o.Wide)
	case *manifests.Service:
		row = serviceRow(v, name, created, o.Wide)
	case *manifests.Endpoints:
		row = []string{name, endpointsColumn(v), created}
	case *manifests.Rollout:
		row = rolloutRow(v, name, created)
	case *manifests.CronJob:
		row = cronJobRow(v, name, created, now, o.Wide)
	case *manifests.HorizontalPodAutoscaler:
		row = hpaRow(v, name, created)
	case *manifests.StatefulSet: // table_statefulsets.go
		row = statefulSetRow(v, name, created, o.Wide)
	case *manifests.ControllerRevision:
		row = controllerRevisionRow(v, name, created)
	case *manifests.ResourceQuota:
		row = quotaRow(v, name, created)
	case *manifests.LimitRange:
		row = limitRangeRow(v, name)
	case *manifests.PersistentVolume: // table_storage.go
		row = persistentVolumeRow(v, name, created)
	case *manifests.PersistentVolumeClaim:
		row = persistentVolumeClaimRow(v, name, created)
	case *manifests.StorageClass:
		row = storageClassRow(v, name, created)
	case *manifests.Ingress:
		row = ingressRow(v, name, created)
	case *manifests.Role: // table_rbac.go
		row = roleRow(&v.ObjectMeta, name)
	case *manifests.ClusterRole:
		row = roleRow(&v.ObjectMeta, name)
	case *manifests.RoleBinding:
		row = bindingRow(v.RoleRef, v.Subjects, name, created, o.Wide)
	case *manifests.ClusterRoleBinding:
		row = bindingRow(v.RoleRef, v.Subjects, name, created, o.Wide)
	default:
		row = []string{name, created}
	}
	if o.ShowLabels {
		row = append(row, labelsColumn(meta.Labels))
	}
	if o.WithNamespace && k.Namespaced {
		row = append([]string{meta.Namespace}, row...)
	}
	return row
}

// printTable writes the header and one row per object (all of kind k).
func printTable(w io.Writer, k manifests.Kind, objs []manifests.Object, o tableOptions) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, strings.Join(tableHeaders(k, o), "\t"))
	for _, obj := range objs {
		fmt.Fprintln(tw, strings.Join(tableRow(obj, o), "\t"))
	}
	return tw.Flush()
}

// sortForTable orders objects as kubectl lists them: by namespace and name,
// events by when they were last seen.
func sortForTable(objs []manifests.Object) {
	sort.SliceStable(objs, func(i, j int) bool {
		ei, iok := objs[i].(*manifests.Event)
		ej, jok := objs[j].(*manifests.Event)
		if iok && jok {
			return eventTime(ei).Before(eventTime(ej))
		}
		mi, mj := objs[i].GetObjectMeta(), objs[j].GetObjectMeta()
		if mi.Namespace != mj.Namespace {
			return mi.Namespace < mj.Namespace
		}
		return mi.Name < mj.Name
	})
}

func eventTime(e *manifests.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp
	}
	return e.CreationTimestamp
}

func nodeRoles(n *manifests.Node) string {
	var roles []string
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if r := strings.TrimPrefix(k, "node-role.kubernetes.io/"); r != "" {
				roles = append(roles, r)
			}
		case k == "kubernetes.io/role" && v != "":
			roles = append(roles, v)
		}
	}
	if len(roles) == 0 {
		return "<none>"
	}
	sort.Strings(roles)
	return strings.Join(roles, ",")
}

func nodeAddress(n *manifests.Node, typ string) string {
	for _, a := range n.Status.Addresses {
		if a.Type == typ {
			return a.Address
		}
	}
	return ""
}

// labelsColumn is k=v pairs sorted by key, or <none>.
func labelsColumn(labels map[string]string) string {
	if len(labels) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + labels[k]
	}
	return strings.Join(keys, ",")
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// workloadHeaders are the columns of the workload kinds, as kubectl prints them.
func workloadHeaders(kind string, wide bool) []string {
	var h []string
	switch kind {
	case "Deployment":
		h = []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}
	case "ReplicaSet":
		h = []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"}
	case "DaemonSet":
		h = []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}
	case "Job":
		h = []string{"NAME", "COMPLETIONS", "DURATION", "AGE"}
	}
	if wide {
		h = append(h, "CONTAINERS", "IMAGES", "SELECTOR")
	}
	return h
}

// workloadRow returns the cells of a Deployment, ReplicaSet, DaemonSet or Job.
func workloadRow(obj manifests.Object, name, created string, now time.Time, wide bool) []string {
	var (
		row  []string
		tmpl *manifests.PodTemplateSpec
		sel  *manifests.LabelSelector
	)
	switch v := obj.(type) {
	case *manifests.Deployment:
		row = []string{name, fmt.Sprintf("%d/%d", v.Status.ReadyReplicas, int32OrZero(v.Spec.Replicas)),
			fmt.Sprint(v.Status.UpdatedReplicas), fmt.Sprint(v.Status.AvailableReplicas), created}
		tmpl, sel = &v.Spec.Template, v.Spec.Selector
	case *manifests.ReplicaSet:
		row = []string{name, fmt.Sprint(int32OrZero(v.Spec.Replicas)), fmt.Sprint(v.Status.Replicas),
			fmt.Sprint(v.Status.ReadyReplicas), created}
		tmpl, sel = &v.Spec.Template, v.Spec.Selector
	case *manifests.DaemonSet:
		s := v.Status
		row = []string{name, fmt.Sprint(s.DesiredNumberScheduled), fmt.Sprint(s.CurrentNumberScheduled),
			fmt.Sprint(s.NumberReady), fmt.Sprint(s.UpdatedNumberScheduled), fmt.Sprint(s.NumberAvailable),
			orNone(manifests.SelectorFromSet(v.Spec.Template.Spec.NodeSelector).String()), created}
		tmpl, sel = &v.Spec.Template, v.Spec.Selector
	case *manifests.Job:
		row = []string{name, jobCompletions(v), jobDuration(v, now), created}
		tmpl, sel = &v.Spec.Template, v.Spec.Selector
	}
	if wide {
		var names, images []string
		for _, c := range tmpl.Spec.Containers {
			names = append(names, c.Name)
			images = append(images, c.Image)
		}
		row = append(row, orNone(strings.Join(names, ",")), orNone(strings.Join(images, ",")), formatLabelSelector(sel))
	}
	return row
}

func int32OrZero(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// jobCompletions is "succeeded/completions", or "succeeded/1 of N" for a
// work-queue Job with parallelism N.
func jobCompletions(j *manifests.Job) string {
	if j.Spec.Completions != nil {
		return fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
	}
	if p := int32OrZero(j.Spec.Parallelism); p > 1 {
		return fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, p)
	}
	return fmt.Sprintf("%d/1", j.Status.Succeeded)
}

// jobDuration is how long the Job ran (so far); empty before it started.
func jobDuration(j *manifests.Job, now time.Time) string {
	switch {
	case j.Status.StartTime == nil:
		return ""
	case j.Status.CompletionTime == nil:
		return humanDuration(now.Sub(*j.Status.StartTime))
	default:
		return humanDuration(j.Status.CompletionTime.Sub(*j.Status.StartTime))
	}
}

// formatLabelSelector renders a LabelSelector as kubectl does (k=v,key in
// (a,b),!key), "<none>" when it selects by nothing.
func formatLabelSelector(ls *manifests.LabelSelector) string {
	if ls == nil {
		return "<none>"
	}
	s, err := manifests.LabelSelectorAsSelector(ls)
	if err != nil {
		return "<error>"
	}
	return orNone(s.String())
}
