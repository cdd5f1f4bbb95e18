package edgectl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

type describeOptions struct {
	*options
	selector string
}

func newDescribeCmd(o *options) *cobra.Command {
	d := &describeOptions{options: o}
	cmd := &cobra.Command{
		Use:   "describe KIND [NAME...] | KIND/NAME...",
		Short: "Show details of objects and their recent events",
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, _, err := parseResourceArgs(args)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			return d.run(cmd.Context(), targets)
		},
	}
	cmd.Flags().StringVarP(&d.selector, "selector", "l", "", "label selector")
	return cmd
}

func (d *describeOptions) run(ctx context.Context, targets []resourceArgs) error {
	cl, err := d.client(ctx)
	if err != nil {
		return err
	}
	failed := false
	first := true
	for _, t := range targets {
		var objs []manifests.Object
		if len(t.Names) == 0 {
			rctx, cancel := d.reqCtx(ctx)
			objs, _, err = cl.List(rctx, t.Kind.Resource, namespaceFor(t.Kind, d.listNamespace()), d.selector)
			cancel()
			if err != nil {
				return fmt.Errorf("list %s: %w", t.Kind.Resource, err)
			}
			sortForTable(objs)
		}
		for _, name := range t.Names {
			rctx, cancel := d.reqCtx(ctx)
			obj, err := cl.Get(rctx, t.Kind.Resource, namespaceFor(t.Kind, d.namespace), name)
			cancel()
			if err != nil {
				d.reportError(err)
				failed = true
				continue
			}
			objs = append(objs, obj)
		}
		for _, obj := range objs {
			events, err := d.eventsFor(ctx, cl, obj)
			if err != nil {
				return err
			}
			if !first {
				fmt.Fprintln(d.streams.Out)
			}
			first = false
			if err := describeObject(d.streams.Out, obj, events, time.Now()); err != nil {
				return err
			}
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// eventsFor lists the events whose involvedObject is obj.
func (d *describeOptions) eventsFor(ctx context.Context, cl *client.Client, obj manifests.Object) ([]*manifests.Event, error) {
	rctx, cancel := d.reqCtx(ctx)
	defer cancel()
	meta := obj.GetObjectMeta()
	items, _, err := cl.List(rctx, "events", meta.Namespace, "")
	if err != nil {
		return nil, fmt.Errorf("list events of %s: %w", objectName(obj), err)
	}
	return matchEvents(obj, items), nil
}

// matchEvents keeps the events about obj, oldest first.
func matchEvents(obj manifests.Object, items []manifests.Object) []*manifests.Event {
	meta := obj.GetObjectMeta()
	kind := kindOf(obj).Kind
	var out []*manifests.Event
	for _, it := range items {
		ev, ok := it.(*manifests.Event)
		if !ok {
			continue
		}
		ref := ev.InvolvedObject
		if ref.Kind != kind || ref.Name != meta.Name || ref.Namespace != meta.Namespace {
			continue
		}
		if ref.UID != "" && meta.UID != "" && ref.UID != meta.UID {
			continue
		}
		out = append(out, ev)
	}
	sort.SliceStable(out, func(i, j int) bool { return eventTime(out[i]).Before(eventTime(out[j])) })
	return out
}

// describeObject writes the kubectl-like description of obj.
func describeObject(w io.Writer, obj manifests.Object, events []*manifests.Event, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p := &describer{w: tw, now: now}
	meta := obj.GetObjectMeta()
	k := kindOf(obj)
	p.field(0, "Name", meta.Name)
	if k.Namespaced {
		p.field(0, "Namespace", meta.Namespace)
	}
	switch v := obj.(type) {
	case *manifests.Pod:
		p.pod(v)
	case *manifests.Node:
		p.node(v)
	case *manifests.Namespace:
		p.labels(meta)
		phase := v.Status.Phase
		if phase == "" {
			phase = "Active"
		}
		p.field(0, "Status", phase)
	case *manifests.ConfigMap:
		p.labels(meta)
		p.line(0, "")
		p.line(0, "Data")
		p.line(0, "====")
		for _, key := range sortedKeys(v.Data) {
			p.line(0, key+":")
			p.line(0, "----")
			p.line(0, v.Data[key])
			p.line(0, "")
		}
		p.line(0, "BinaryData")
		p.line(0, "====")
		for _, key := range sortedKeys(v.BinaryData) {
			p.line(0, fmt.Sprintf("%s: %d bytes", key, len(v.BinaryData[key])))
		}
		p.line(0, "")
	case *manifests.Secret:
		p.labels(meta)
		typ := v.Type
		if typ == "" {
			typ = "Opaque"
		}
		p.line(0, "")
		p.field(0, "Type", typ)
		p.line(0, "")
		p.line(0, "Data")
		p.line(0, "====")
		// Sizes only, never values (as kubectl describe).
		for _, key := range sortedKeys(v.Data) {
			p.line(0, fmt.Sprintf("%s:\t%d bytes", key, len(v.Data[key])))
		}
		for _, key := range sortedKeys(v.StringData) {
			if _, dup := v.Data[key]; !dup {
				p.line(0, fmt.Sprintf("%s:\t%d bytes", key, len(v.StringData[key])))
			}
		}
	case *manifests.Event:
		p.labels(meta)
		p.field(0, "Type", v.Type)
		p.field(0, "Reason", v.Reason)
		p.field(0, "Message", v.Message)
		p.field(0, "Involved Object", strings.ToLower(v.InvolvedObject.Kind)+"/"+v.InvolvedObject.Name)
		p.field(0, "Source", v.Source.Component)
		p.field(0, "Count", fmt.Sprint(v.Count))
	default:
		p.labels(meta)
	}
	if _, isEvent := obj.(*manifests.Event); !isEvent {
		p.events(events)
	}
	return tw.Flush()
}

// describer writes indented "Key:\tvalue" lines.
type describer struct {
	w   io.Writer
	now time.Time
}

func (p *describer) line(indent int, s string) {
	fmt.Fprintf(p.w, "%s%s\n", strings.Repeat("  ", indent), s)
}

func (p *describer) field(indent int, key, value string) {
	if value == "" {
		value = "<none>"
	}
	fmt.Fprintf(p.w, "%s%s:\t%s\n", strings.Repeat("  ", indent), key, value)
}

// mapField prints a map one key per line (Labels, Annotations, Node-Selectors).
func (p *describer) mapField(indent int, key string, m map[string]string, sep string) {
	if len(m) == 0 {
		p.field(indent, key, "<none>")
		return
	}
	for i, k := range sortedKeys(m) {
		label := key + ":"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(p.w, "%s%s\t%s%s%s\n", strings.Repeat("  ", indent), label, k, sep, m[k])
	}
}

func (p *describer) labels(meta *manifests.ObjectMeta) {
	p.mapField(0, "Labels", meta.Labels, "=")
	p.mapField(0, "Annotations", meta.Annotations, ": ")
}

func (p *describer) time(t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return t.Format(time.RFC1123Z)
}

func (p *describer) pod(v *manifests.Pod) {
	node := v.Spec.NodeName
	if node != "" && v.Status.HostIP != "" {
		node += "/" + v.Status.HostIP
	}
	runtimeClass := ""
	if v.Spec.RuntimeClassName != nil {
		runtimeClass = *v.Spec.RuntimeClassName
	}
	p.field(0, "Runtime Class Name", runtimeClass)
	p.field(0, "Node", node)
	if v.Status.StartTime != nil {
		p.field(0, "Start Time", p.time(*v.Status.StartTime))
	}
	p.labels(&v.ObjectMeta)
	status := v.Status.Phase
	if v.DeletionTimestamp != nil {
		status = "Terminating (lasts " + humanDuration(p.now.Sub(*v.DeletionTimestamp)) + ")"
	}
	p.field(0, "Status", status)
	if v.Status.Reason != "" {
		p.field(0, "Reason", v.Status.Reason)
	}
	if v.Status.Message != "" {
		p.field(0, "Message", v.Status.Message)
	}
	p.field(0, "IP", v.Status.PodIP)
	if len(v.Spec.InitContainers) > 0 {
		p.line(0, "Init Containers:")
		p.containers(v.Spec.InitContainers, v.Status.InitContainerStatuses)
	}
	p.line(0, "Containers:")
	p.containers(v.Spec.Containers, v.Status.ContainerStatuses)
	if len(v.Status.Conditions) > 0 {
		p.line(0, "Conditions:")
		p.line(1, "Type\tStatus")
		for _, c := range v.Status.Conditions {
			p.line(1, c.Type+"\t"+c.Status)
		}
	}
	if len(v.Spec.Volumes) > 0 {
		p.line(0, "Volumes:")
		for _, vol := range v.Spec.Volumes {
			p.line(1, vol.Name+":")
			switch {
			case vol.EmptyDir != nil:
				p.field(2, "Type", "EmptyDir (a temporary directory that shares a pod's lifetime)")
			case vol.HostPath != nil:
				p.field(2, "Type", "HostPath (bare host directory volume)")
				p.field(2, "Path", vol.HostPath.Path)
			case vol.ConfigMap != nil:
				p.field(2, "Type", "ConfigMap (a volume populated by a ConfigMap)")
				p.field(2, "Name", vol.ConfigMap.Name)
			case vol.Secret != nil:
				p.field(2, "Type", "Secret (a volume populated by a Secret)")
				p.field(2, "SecretName", vol.Secret.SecretName)
			}
		}
	}
	p.mapField(0, "Node-Selectors", v.Spec.NodeSelector, "=")
	if len(v.Spec.Tolerations) == 0 {
		p.field(0, "Tolerations", "<none>")
	} else {
		for i, t := range v.Spec.Tolerations {
			s := t.Key
			if t.Operator == "Equal" || (t.Operator == "" && t.Value != "") {
				s += "=" + t.Value
			}
			if t.Effect != "" {
				s += ":" + t.Effect
			}
			if t.Operator == "Exists" && t.Key == "" {
				s = "op=Exists"
			}
			if t.TolerationSeconds != nil {
				s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
			}
			key := "Tolerations:"
			if i > 0 {
				key = ""
			}
			fmt.Fprintf(p.w, "%s\t%s\n", key, s)
		}
	}
}

func (p *describer) containers(specs []manifests.Container, statuses []manifests.ContainerStatus) {
	byName := map[string]manifests.ContainerStatus{}
	for _, cs := range statuses {
		byName[cs.Name] = cs
	}
	for _, c := range specs {
		cs, hasStatus := byName[c.Name]
		p.line(1, c.Name+":")
		p.field(2, "Container ID", cs.ContainerID)
		p.field(2, "Image", c.Image)
		p.field(2, "Image ID", cs.ImageID)
		if len(c.Command) > 0 {
			p.field(2, "Command", strings.Join(c.Command, " "))
		}
		if len(c.Args) > 0 {
			p.field(2, "Args", strings.Join(c.Args, " "))
		}
		if hasStatus {
			p.state(2, "State", cs.State)
			if cs.LastTerminationState != (manifests.ContainerState{}) {
				p.state(2, "Last State", cs.LastTerminationState)
			}
			p.field(2, "Ready", boolWord(cs.Ready))
			p.field(2, "Restart Count", fmt.Sprint(cs.RestartCount))
		} else {
			p.field(2, "State", "Waiting")
			p.field(2, "Ready", "False")
			p.field(2, "Restart Count", "0")
		}
		p.resources(3, "Limits", c.Resources.Limits)
		p.resources(3, "Requests", c.Resources.Requests)
		if len(c.Env) == 0 && len(c.EnvFrom) == 0 {
			p.field(2, "Environment", "<none>")
		} else {
			p.line(2, "Environment:")
			for _, e := range c.Env {
				p.line(3, e.Name+":\t"+envValue(e))
			}
			for _, ef := range c.EnvFrom {
				switch {
				case ef.ConfigMapRef != nil:
					p.line(3, ef.ConfigMapRef.Name+"\tConfigMap\tOptional: "+optional(ef.ConfigMapRef.Optional))
				case ef.SecretRef != nil:
					p.line(3, ef.SecretRef.Name+"\tSecret\tOptional: "+optional(ef.SecretRef.Optional))
				}
			}
		}
		if len(c.VolumeMounts) == 0 {
			p.field(2, "Mounts", "<none>")
		} else {
			p.line(2, "Mounts:")
			for _, m := range c.VolumeMounts {
				mode := "rw"
				if m.ReadOnly {
					mode = "ro"
				}
				p.line(3, fmt.Sprintf("%s from %s (%s)", m.MountPath, m.Name, mode))
			}
		}
	}
}

func (p *describer) state(indent int, key string, s manifests.ContainerState) {
	switch {
	case s.Running != nil:
		p.field(indent, key, "Running")
		p.field(indent+1, "Started", p.time(s.Running.StartedAt))
	case s.Terminated != nil:
		t := s.Terminated
		p.field(indent, key, "Terminated")
		if t.Reason != "" {
			p.field(indent+1, "Reason", t.Reason)
		}
		if t.Message != "" {
			p.field(indent+1, "Message", t.Message)
		}
		p.field(indent+1, "Exit Code", fmt.Sprint(t.ExitCode))
		if t.Signal != 0 {
			p.field(indent+1, "Signal", fmt.Sprint(t.Signal))
		}
		p.field(indent+1, "Started", p.time(t.StartedAt))
		p.field(indent+1, "Finished", p.time(t.FinishedAt))
	case s.Waiting != nil:
		p.field(indent, key, "Waiting")
		if s.Waiting.Reason != "" {
			p.field(indent+1, "Reason", s.Waiting.Reason)
		}
		if s.Waiting.Message != "" {
			p.field(indent+1, "Message", s.Waiting.Message)
		}
	default:
		p.field(indent, key, "Waiting")
	}
}

func (p *describer) resources(indent int, key string, rl manifests.ResourceList) {
	if len(rl) == 0 {
		return
	}
	p.line(indent-1, key+":")
	names := make([]string, 0, len(rl))
	for n := range rl {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p.line(indent, n+":\t"+string(rl[n]))
	}
}

func (p *describer) node(v *manifests.Node) {
	p.field(0, "Roles", nodeRoles(v))
	p.labels(&v.ObjectMeta)
	p.field(0, "CreationTimestamp", p.time(v.CreationTimestamp))
	if len(v.Spec.Taints) == 0 {
		p.field(0, "Taints", "<none>")
	} else {
		for i, t := range v.Spec.Taints {
			key := "Taints:"
			if i > 0 {
				key = ""
			}
			s := t.Key
			if t.Value != "" {
				s += "=" + t.Value
			}
			fmt.Fprintf(p.w, "%s\t%s:%s\n", key, s, t.Effect)
		}
	}
	p.field(0, "Unschedulable", fmt.Sprint(v.Spec.Unschedulable))
	p.line(0, "Conditions:")
	p.line(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
	p.line(1, "----\t------\t-----------------\t------------------\t------\t-------")
	for _, c := range v.Status.Conditions {
		p.line(1, strings.Join([]string{c.Type, c.Status, p.time(c.LastHeartbeatTime), p.time(c.LastTransitionTime), c.Reason, c.Message}, "\t"))
	}
	p.line(0, "Addresses:")
	for _, a := range v.Status.Addresses {
		p.line(1, a.Type+":\t"+a.Address)
	}
	p.line(0, "Capacity:")
	p.quantities(v.Status.Capacity)
	p.line(0, "Allocatable:")
	p.quantities(v.Status.Allocatable)
	info := v.Status.NodeInfo
	p.line(0, "System Info:")
	p.line(1, "Machine ID:\t"+info.MachineID)
	p.line(1, "Kernel Version:\t"+info.KernelVersion)
	p.line(1, "OS Image:\t"+info.OSImage)
	p.line(1, "Operating System:\t"+info.OperatingSystem)
	p.line(1, "Architecture:\t"+info.Architecture)
	p.line(1, "Container Runtime Version:\t"+info.ContainerRuntimeVersion)
	p.line(1, "Agent Version:\t"+info.KubeletVersion)
	var handlers []string
	for _, h := range v.Status.RuntimeHandlers {
		handlers = append(handlers, h.Name)
	}
	p.field(0, "Runtime Handlers", strings.Join(handlers, ","))
}

func (p *describer) quantities(rl manifests.ResourceList) {
	names := make([]string, 0, len(rl))
	for n := range rl {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p.line(1, n+":\t"+string(rl[n]))
	}
}

func (p *describer) events(events []*manifests.Event) {
	if len(events) == 0 {
		p.field(0, "Events", "<none>")
		return
	}
	p.line(0, "Events:")
	p.line(1, "Type\tReason\tAge\tFrom\tMessage")
	p.line(1, "----\t------\t----\t----\t-------")
	for _, e := range events {
		ageText := age(p.now, eventTime(e))
		if e.Count > 1 && !e.FirstTimestamp.IsZero() {
			ageText = fmt.Sprintf("%s (x%d over %s)", ageText, e.Count, humanDuration(p.now.Sub(e.FirstTimestamp)))
		}
		from := e.Source.Component
		if e.Source.Host != "" {
			from += ", " + e.Source.Host
		}
		p.line(1, strings.Join([]string{e.Type, e.Reason, ageText, from, strings.TrimSpace(e.Message)}, "\t"))
	}
}

func envValue(e manifests.EnvVar) string {
	if e.ValueFrom == nil {
		return e.Value
	}
	switch {
	case e.ValueFrom.ConfigMapKeyRef != nil:
		r := e.ValueFrom.ConfigMapKeyRef
		return fmt.Sprintf("<set to the key '%s' of config map '%s'>\tOptional: %s", r.Key, r.Name, optional(r.Optional))
	case e.ValueFrom.SecretKeyRef != nil:
		r := e.ValueFrom.SecretKeyRef
		return fmt.Sprintf("<set to the key '%s' in secret '%s'>\tOptional: %s", r.Key, r.Name, optional(r.Optional))
	case e.ValueFrom.FieldRef != nil:
		v := e.ValueFrom.FieldRef.APIVersion
		if v == "" {
			v = "v1"
		}
		return fmt.Sprintf("(%s:%s)", v, e.ValueFrom.FieldRef.FieldPath)
	}
	return ""
}

func optional(b *bool) string {
	if b != nil && *b {
		return "true"
	}
	return "false"
}

func boolWord(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
