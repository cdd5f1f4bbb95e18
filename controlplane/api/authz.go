package api

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// A request on a node-scoped subject (messaging.NodeAPISubject) comes from
// the agent of that node: its NATS permissions let it publish only under
// its own name. authorizeNode decides what that node may do, from what the
// agent really needs:
//   - its own Node: get, create (apply), update, status;
//   - the pods bound to it: get, status;
//   - a ConfigMap or Secret: get, only while a pod bound to it uses it;
//   - Events about itself or its pods: create (apply);
//   - services, endpoints, nodes: get, list, watch (service proxy, DNS,
//     pod network routes).
//   - its own resource usage: report (usage; its pods' figures count
//     only for pods bound to it, see usage.go).
//   - ingresses: get, list, watch (the Ingress proxy, on every node);
//     a Secret: get, also when an Ingress of its namespace names it in
//     spec.tls (a deliberate widening, docs/security.md).
//   - PersistentVolumeClaims and PersistentVolumes its pods use: get;
//     its volumes being deleted: remove their cleanup finalizer
//     (authz_volumes.go).
//
// Anything else is Forbidden, naming node, verb and object.

// nodeReadable are the resources every node may get and list.
var nodeReadable = map[string]bool{"services": true, "endpoints": true, "nodes": true, "ingresses": true}

func forbidden(node, verb, resource, namespace, name, why string) error {
	obj := resource
	if name != "" {
		obj += " " + qualified(namespace, name)
	}
	return client.Errorf(client.CodeForbidden, "node %q may not %s %s: %s", node, verb, obj, why)
}

func qualified(namespace, name string) string {
	if namespace == "" {
		return fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("%q", namespace+"/"+name)
}

func (s *Server) authorizeNode(ctx context.Context, node, verb string, body []byte) error {
	switch verb {
	case messaging.VerbUsage:
		// Its own usage only (usage.go).
		return authorizeUsage(node, body)
	case messaging.VerbGet:
		var req client.GetRequest
		if err := decodeBounded(body, &req); err != nil {
			return err
		}
		k, err := resolveResource(req.Resource)
		if err != nil {
			return err
		}
		ns := namespaceFor(k, req.Namespace)
		switch k.Resource {
		case "nodes", "services", "endpoints", "ingresses":
			// Its own Node, and what it may list anyway.
			return nil
		case "pods":
			if s.podBoundTo(ctx, node, ns, req.Name) {
				return nil
			}
			return forbidden(node, verb, k.Resource, ns, req.Name, "the pod is not bound to it")
		case "configmaps", "secrets":
			ok, err := s.usedByPodOf(ctx, node, k.Resource, ns, req.Name)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			if k.Resource == "secrets" {
				if ok, err := s.usedByIngress(ctx, ns, req.Name); err != nil || ok {
					return err
				}
			}
			return forbidden(node, verb, k.Resource, ns, req.Name, "no pod bound to it uses it")
		case "persistentvolumeclaims", "persistentvolumes": // authz_volumes.go
			return s.authorizeNodeVolumeGet(ctx, node, verb, k.Resource, ns, req.Name)
		}
		return forbidden(node, verb, k.Resource, ns, req.Name, "nodes may not read this kind")
	case messaging.VerbList:
		var req client.ListRequest
		if err := decodeBounded(body, &req); err != nil {
			return err
		}
		k, err := resolveResource(req.Resource)
		if err != nil {
			return err
		}
		if nodeReadable[k.Resource] {
			return nil
		}
		return forbidden(node, verb, k.Resource, "", "", "nodes may only list services, endpoints, nodes and ingresses")
	case messaging.VerbApply, messaging.VerbUpdate, messaging.VerbUpdateStatus:
		var raw json.RawMessage
		if verb == messaging.VerbApply {
			var req client.ApplyRequest
			if err := decodeBounded(body, &req); err != nil {
				return err
			}
			raw = req.Object
		} else {
			var req client.UpdateRequest
			if err := decodeBounded(body, &req); err != nil {
				return err
			}
			raw = req.Object
		}
		if err := refuseEarly(node, verb, raw); err != nil {
			return err
		}
		obj, k, err := decodeObjectBounded(raw)
		if err != nil {
			return err
		}
		meta := obj.GetObjectMeta()
		ns := namespaceFor(k, meta.Namespace)
		switch o := obj.(type) {
		case *manifests.Node:
			if meta.Name == node {
				return nil
			}
			return forbidden(node, verb, k.Resource, "", meta.Name, "it is another node")
		case *manifests.Pod:
			if verb != messaging.VerbUpdateStatus {
				return forbidden(node, verb, k.Resource, ns, meta.Name, "nodes may only update the status of pods")
			}
			stored, err := s.st.Get(ctx, "pods", ns, meta.Name)
			if err != nil {
				return err // NotFound: the agent drops the status of a deleted pod
			}
			remember(ctx, stored) // the status handler starts from it
			sp, _ := stored.(*manifests.Pod)
			if sp != nil && meta.UID != "" && sp.UID != meta.UID {
				// Another pod of the same name now: this one is gone.
				return client.Errorf(client.CodeNotFound, "pods %s with UID %s not found", qualified(ns, meta.Name), meta.UID)
			}
			if sp != nil && sp.Spec.NodeName == node {
				return nil
			}
			return forbidden(node, verb, k.Resource, ns, meta.Name, "the pod is not bound to it")
		case *manifests.PersistentVolume: // authz_volumes.go
			if verb == messaging.VerbUpdate {
				return s.authorizeNodeVolumeUpdate(ctx, node, verb, o)
			}
		case *manifests.Event:
			if verb == messaging.VerbApply {
				io := o.InvolvedObject
				switch {
				case io.Kind == "Node" && io.Name == node:
					return nil
				case io.Kind == "Pod" && s.podBoundTo(ctx, node, namespaceFor(manifests.Kind{Namespaced: true}, io.Namespace), io.Name):
					return nil
				}
				return forbidden(node, verb, k.Resource, ns, meta.Name, "the event is not about it or its pods")
			}
		}
		return forbidden(node, verb, k.Resource, ns, meta.Name, "nodes may not write this kind")
	}
	return client.Errorf(client.CodeForbidden, "node %q may not %s", node, verb)
}

// refuseEarly returns the Forbidden error of a write node may surely not
// make, judged from the object's apiVersion, kind and name alone, read by
// a shallow decode: a node cannot make the control plane decode in full
// (and validate) an object it may not write. nil means "decode it whole
// and decide" (authorizeNode), also when the shallow decode fails: the
// full one names what is wrong.
func refuseEarly(node, verb string, raw []byte) error {
	var o struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return nil
	}
	k, err := manifests.KindFor(o.APIVersion, o.Kind)
	if err != nil || len(o.Metadata.Name) > 253 || len(o.Metadata.Namespace) > 63 {
		return nil
	}
	ns, name := namespaceFor(k, o.Metadata.Namespace), o.Metadata.Name
	switch k.Kind {
	case "Node":
		if name == node {
			return nil
		}
		return forbidden(node, verb, k.Resource, "", name, "it is another node")
	case "Pod":
		if verb == messaging.VerbUpdateStatus {
			return nil // if the pod is bound to it: authorizeNode
		}
		return forbidden(node, verb, k.Resource, ns, name, "nodes may only update the status of pods")
	case "PersistentVolume":
		if verb == messaging.VerbUpdate {
			return nil // authorizeNodeVolumeUpdate
		}
	case "Event":
		if verb == messaging.VerbApply {
			return nil // if it is about the node or its pods: authorizeNode
		}
	}
	return forbidden(node, verb, k.Resource, ns, name, "nodes may not write this kind")
}

// podBoundTo reports whether the stored pod namespace/name is bound to node.
func (s *Server) podBoundTo(ctx context.Context, node, namespace, name string) bool {
	if name == "" {
		return false
	}
	obj, err := s.st.Get(ctx, "pods", namespace, name)
	if err != nil {
		return false
	}
	pod, ok := obj.(*manifests.Pod)
	return ok && pod.Spec.NodeName == node
}

// usedByPodOf reports whether a pod bound to node uses the ConfigMap or
// Secret (resource "configmaps" or "secrets") namespace/name.
func (s *Server) usedByPodOf(ctx context.Context, node, resource, namespace, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	pods, _, err := s.st.List(ctx, "pods", namespace, manifests.Selector{})
	if err != nil {
		return false, err
	}
	for _, obj := range pods {
		pod, ok := obj.(*manifests.Pod)
		if !ok || pod.Spec.NodeName != node {
			continue
		}
		if podUses(&pod.Spec, resource, name) {
			return true, nil
		}
	}
	return false, nil
}

// usedByIngress reports whether an Ingress of namespace names the Secret
// name in spec.tls: every node serves every Ingress, so every node may
// read the certificates.
func (s *Server) usedByIngress(ctx context.Context, namespace, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	ings, _, err := s.st.List(ctx, "ingresses", namespace, manifests.Selector{})
	if err != nil {
		return false, err
	}
	for _, obj := range ings {
		ing, ok := obj.(*manifests.Ingress)
		if !ok {
			continue
		}
		for _, t := range ing.Spec.TLS {
			if t.SecretName == name {
				return true, nil
			}
		}
	}
	return false, nil
}

// podUses reports whether spec refers to the ConfigMap or Secret name:
// volumes, env valueFrom, envFrom, and (secrets) imagePullSecrets.
func podUses(spec *manifests.PodSpec, resource, name string) bool {
	secret := resource == "secrets"
	for _, v := range spec.Volumes {
		if !secret && v.ConfigMap != nil && v.ConfigMap.Name == name {
			return true
		}
		if secret && v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
	}
	if secret {
		for _, r := range spec.ImagePullSecrets {
			if r.Name == name {
				return true
			}
		}
	}
	for _, list := range [][]manifests.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if !secret && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Name == name {
					return true
				}
				if secret && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
					return true
				}
			}
			for _, e := range c.EnvFrom {
				if !secret && e.ConfigMapRef != nil && e.ConfigMapRef.Name == name {
					return true
				}
				if secret && e.SecretRef != nil && e.SecretRef.Name == name {
					return true
				}
			}
		}
	}
	return false
}
