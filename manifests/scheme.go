package manifests

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Kind describes one supported kind: how it is named, whether it lives in a
// namespace, and how to make an empty one.
type Kind struct {
	APIVersion string   // e.g. "v1", "apps/v1"
	Kind       string   // e.g. "Pod"
	Resource   string   // lower-case plural, e.g. "pods"
	Singular   string   // lower-case singular, e.g. "pod"
	ShortNames []string // e.g. "po"
	Namespaced bool
	New        func() Object
}

var kinds = []Kind{
	{APIVersion: "v1", Kind: "Pod", Resource: "pods", Singular: "pod", ShortNames: []string{"po"}, Namespaced: true, New: func() Object { return &Pod{} }},
	{APIVersion: "v1", Kind: "Namespace", Resource: "namespaces", Singular: "namespace", ShortNames: []string{"ns"}, New: func() Object { return &Namespace{} }},
	{APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps", Singular: "configmap", ShortNames: []string{"cm"}, Namespaced: true, New: func() Object { return &ConfigMap{} }},
	{APIVersion: "v1", Kind: "Secret", Resource: "secrets", Singular: "secret", Namespaced: true, New: func() Object { return &Secret{} }},
	{APIVersion: "v1", Kind: "Node", Resource: "nodes", Singular: "node", ShortNames: []string{"no"}, New: func() Object { return &Node{} }},
	{APIVersion: "v1", Kind: "Event", Resource: "events", Singular: "event", ShortNames: []string{"ev"}, Namespaced: true, New: func() Object { return &Event{} }},
	{APIVersion: "apps/v1", Kind: "Deployment", Resource: "deployments", Singular: "deployment", ShortNames: []string{"deploy"}, Namespaced: true, New: func() Object { return &Deployment{} }},
	{APIVersion: "apps/v1", Kind: "ReplicaSet", Resource: "replicasets", Singular: "replicaset", ShortNames: []string{"rs"}, Namespaced: true, New: func() Object { return &ReplicaSet{} }},
	{APIVersion: "apps/v1", Kind: "DaemonSet", Resource: "daemonsets", Singular: "daemonset", ShortNames: []string{"ds"}, Namespaced: true, New: func() Object { return &DaemonSet{} }},
	{APIVersion: "apps/v1", Kind: "StatefulSet", Resource: "statefulsets", Singular: "statefulset", ShortNames: []string{"sts"}, Namespaced: true, New: func() Object { return &StatefulSet{} }},
	{APIVersion: "apps/v1", Kind: "ControllerRevision", Resource: "controllerrevisions", Singular: "controllerrevision", Namespaced: true, New: func() Object { return &ControllerRevision{} }},
	{APIVersion: "batch/v1", Kind: "Job", Resource: "jobs", Singular: "job", Namespaced: true, New: func() Object { return &Job{} }},
	{APIVersion: "batch/v1", Kind: "CronJob", Resource: "cronjobs", Singular: "cronjob", ShortNames: []string{"cj"}, Namespaced: true, New: func() Object { return &CronJob{} }},
	{APIVersion: "v1", Kind: "Service", Resource: "services", Singular: "service", ShortNames: []string{"svc"}, Namespaced: true, New: func() Object { return &Service{} }},
	{APIVersion: "v1", Kind: "Endpoints", Resource: "endpoints", Singular: "endpoints", ShortNames: []string{"ep"}, Namespaced: true, New: func() Object { return &Endpoints{} }},
	{APIVersion: "v1", Kind: "ResourceQuota", Resource: "resourcequotas", Singular: "resourcequota", ShortNames: []string{"quota"}, Namespaced: true, New: func() Object { return &ResourceQuota{} }},
	{APIVersion: "v1", Kind: "LimitRange", Resource: "limitranges", Singular: "limitrange", ShortNames: []string{"limits"}, Namespaced: true, New: func() Object { return &LimitRange{} }},
	{APIVersion: "v1", Kind: "PersistentVolume", Resource: "persistentvolumes", Singular: "persistentvolume", ShortNames: []string{"pv"}, New: func() Object { return &PersistentVolume{} }},
	{APIVersion: "v1", Kind: "PersistentVolumeClaim", Resource: "persistentvolumeclaims", Singular: "persistentvolumeclaim", ShortNames: []string{"pvc"}, Namespaced: true, New: func() Object { return &PersistentVolumeClaim{} }},
	{APIVersion: "storage.k8s.io/v1", Kind: "StorageClass", Resource: "storageclasses", Singular: "storageclass", ShortNames: []string{"sc"}, New: func() Object { return &StorageClass{} }},
	{APIVersion: "networking.k8s.io/v1", Kind: "Ingress", Resource: "ingresses", Singular: "ingress", ShortNames: []string{"ing"}, Namespaced: true, New: func() Object { return &Ingress{} }},
	{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role", Resource: "roles", Singular: "role", Namespaced: true, New: func() Object { return &Role{} }},
	{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Resource: "clusterroles", Singular: "clusterrole", New: func() Object { return &ClusterRole{} }},
	{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding", Resource: "rolebindings", Singular: "rolebinding", Namespaced: true, New: func() Object { return &RoleBinding{} }},
	{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding", Resource: "clusterrolebindings", Singular: "clusterrolebinding", New: func() Object { return &ClusterRoleBinding{} }},
	{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Resource: "horizontalpodautoscalers", Singular: "horizontalpodautoscaler", ShortNames: []string{"hpa"}, Namespaced: true, New: func() Object { return &HorizontalPodAutoscaler{} }},
	{APIVersion: "edge.io/v1alpha1", Kind: "Rollout", Resource: "rollouts", Singular: "rollout", ShortNames: []string{"ro"}, Namespaced: true, New: func() Object { return &Rollout{} }},
}

// Kinds returns every supported kind.
func Kinds() []Kind { return append([]Kind(nil), kinds...) }

// KindFor returns the kind registered for apiVersion and kind.
func KindFor(apiVersion, kind string) (Kind, error) {
	for _, k := range kinds {
		if k.Kind == kind {
			if k.APIVersion != apiVersion {
				return Kind{}, fmt.Errorf("apiVersion: %q is not supported for kind %s (use %q)", apiVersion, kind, k.APIVersion)
			}
			return k, nil
		}
	}
	return Kind{}, fmt.Errorf("kind: %q is not a supported kind (supported: %s)", kind, strings.Join(kindNames(), ", "))
}

// KindForResource resolves what an operator types (pods, pod, po, Pod) to a kind.
func KindForResource(name string) (Kind, error) {
	l := strings.ToLower(name)
	if i := strings.IndexByte(l, '.'); i > 0 { // "deployments.apps"
		l = l[:i]
	}
	for _, k := range kinds {
		if l == k.Resource || l == k.Singular || l == strings.ToLower(k.Kind) {
			return k, nil
		}
		for _, s := range k.ShortNames {
			if l == s {
				return k, nil
			}
		}
	}
	return Kind{}, fmt.Errorf("the server doesn't have a resource type %q", name)
}

func kindNames() []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.Kind)
	}
	sort.Strings(out)
	return out
}

// FromJSON decodes an object the control plane stored or sent. It trusts
// its input: it is not the strict decoder for operator manifests (see Decode).
func FromJSON(raw []byte) (Object, error) {
	var tm TypeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("decode object: %w", err)
	}
	k, err := KindFor(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	obj := k.New()
	if err := json.Unmarshal(raw, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", tm.Kind, err)
	}
	return obj, nil
}

// KindOf returns the registered kind of obj, from its TypeMeta or, when
// that is empty, from its Go type.
func KindOf(obj Object) (Kind, error) {
	tm := obj.GetTypeMeta()
	if tm.Kind != "" {
		return KindFor(tm.APIVersion, tm.Kind)
	}
	for _, k := range kinds {
		if reflect.TypeOf(k.New()) == reflect.TypeOf(obj) {
			return k, nil
		}
	}
	return Kind{}, fmt.Errorf("type %T is not a registered kind", obj)
}

// SetKind fills obj's apiVersion and kind from its Go type.
func SetKind(obj Object) error {
	k, err := KindOf(obj)
	if err != nil {
		return err
	}
	tm := obj.GetTypeMeta()
	tm.APIVersion, tm.Kind = k.APIVersion, k.Kind
	return nil
}
