// Package envvar resolves a container's environment the way the kubelet
// does: envFrom first, then env (later entries win), values from
// configmaps, secrets and pod fields, and $(VAR) expansion.
package envvar

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

// Sources reads the configmaps and secrets a pod refers to. A missing object
// is reported with an error for which IsNotFound returns true.
type Sources interface {
	ConfigMap(ctx context.Context, namespace, name string) (*manifests.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*manifests.Secret, error)
	IsNotFound(err error) bool
}

// PodFields are the values fieldRef may read that are not in the pod spec.
type PodFields struct {
	HostIP, PodIP string
	// Services are the services known when the container starts; those of
	// the pod's namespace become service link variables (see ServiceEnv),
	// which env and envFrom override. Nil when enableServiceLinks is false.
	Services []manifests.Service
}

// Resolve returns the environment of container c of pod.
func Resolve(ctx context.Context, pod *manifests.Pod, c *manifests.Container, src Sources, f PodFields) ([]runtime.KeyValue, error) {
	var out []runtime.KeyValue
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; ok {
			for i := range out {
				if out[i].Key == k {
					out[i].Value = v
				}
			}
		} else {
			out = append(out, runtime.KeyValue{Key: k, Value: v})
		}
		vals[k] = v
	}
	ns := pod.Namespace
	for _, kv := range ServiceEnv(ns, f.Services) {
		set(kv.Key, kv.Value)
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := src.ConfigMap(ctx, ns, ef.ConfigMapRef.Name)
			if err != nil {
				if src.IsNotFound(err) && optional(ef.ConfigMapRef.Optional) {
					continue
				}
				return nil, err
			}
			for _, k := range sortedKeys(cm.Data) {
				set(ef.Prefix+k, cm.Data[k])
			}
		case ef.SecretRef != nil:
			s, err := src.Secret(ctx, ns, ef.SecretRef.Name)
			if err != nil {
				if src.IsNotFound(err) && optional(ef.SecretRef.Optional) {
					continue
				}
				return nil, err
			}
			for _, k := range sortedKeys(s.Data) {
				set(ef.Prefix+k, string(s.Data[k]))
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, Expand(e.Value, vals))
			continue
		}
		v, ok, err := valueFrom(ctx, pod, e, src, f)
		if err != nil {
			return nil, err
		}
		if ok {
			set(e.Name, v)
		}
	}
	return out, nil
}

func valueFrom(ctx context.Context, pod *manifests.Pod, e manifests.EnvVar, src Sources, f PodFields) (string, bool, error) {
	ns := pod.Namespace
	vf := e.ValueFrom
	switch {
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		cm, err := src.ConfigMap(ctx, ns, ref.Name)
		if err != nil {
			if src.IsNotFound(err) && optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, err
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if b, okb := cm.BinaryData[ref.Key]; okb {
				return string(b), true, nil
			}
			if optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, ns, ref.Name)
		}
		return v, true, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		s, err := src.Secret(ctx, ns, ref.Name)
		if err != nil {
			if src.IsNotFound(err) && optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, err
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if sv, oks := s.StringData[ref.Key]; oks {
				return sv, true, nil
			}
			if optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, ns, ref.Name)
		}
		return string(v), true, nil
	case vf.FieldRef != nil:
		v, err := FieldValue(pod, vf.FieldRef.FieldPath, f)
		if err != nil {
			return "", false, fmt.Errorf("env %s: %w", e.Name, err)
		}
		return v, true, nil
	}
	return "", false, fmt.Errorf("env %s: valueFrom has no source", e.Name)
}

// FieldValue reads a fieldRef path of the pod.
func FieldValue(pod *manifests.Pod, path string, f PodFields) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return pod.UID, nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return f.PodIP, nil
	case "status.hostIP":
		return f.HostIP, nil
	}
	for _, p := range []string{"metadata.labels['", "metadata.annotations['"} {
		if strings.HasPrefix(path, p) && strings.HasSuffix(path, "']") {
			key := path[len(p) : len(path)-2]
			if strings.HasPrefix(p, "metadata.labels") {
				return pod.Labels[key], nil
			}
			return pod.Annotations[key], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

// Expand replaces $(VAR) with the value of VAR from env; $$ escapes a $
// and references to unknown variables are left as they are.
func Expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// ExpandAll expands every string of list with env.
func ExpandAll(list []string, env []runtime.KeyValue) []string {
	if list == nil {
		return nil
	}
	m := make(map[string]string, len(env))
	for _, kv := range env {
		m[kv.Key] = kv.Value
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = Expand(s, m)
	}
	return out
}

func optional(b *bool) bool { return b != nil && *b }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
