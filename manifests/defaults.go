package manifests

import "strings"

// Kubernetes default values.
const (
	DefaultNamespace                     = "default"
	DefaultTerminationGracePeriodSeconds = int64(30)
	DefaultSchedulerName                 = "default-scheduler"
	DefaultDNSPolicy                     = "ClusterFirst"
	DefaultTerminationMessagePath        = "/dev/termination-log"
	DefaultProjectionMode                = int32(0644)
)

// Default fills the fields Kubernetes defaults when they are empty. It
// never overwrites a value that is set, so it is idempotent.
func Default(obj Object) {
	if obj == nil {
		return
	}
	if k, err := KindOf(obj); err == nil {
		tm := obj.GetTypeMeta()
		if tm.Kind == "" {
			tm.APIVersion, tm.Kind = k.APIVersion, k.Kind
		}
		if m := obj.GetObjectMeta(); k.Namespaced && m.Namespace == "" {
			m.Namespace = DefaultNamespace
		}
	}
	switch o := obj.(type) {
	case *Pod:
		defaultPodSpec(&o.Spec)
	case *Namespace:
		if o.Status.Phase == "" {
			o.Status.Phase = "Active"
		}
	case *Secret:
		if o.Type == "" {
			o.Type = "Opaque"
		}
	case *Deployment, *ReplicaSet, *DaemonSet, *Job:
		defaultWorkload(o)
	case *CronJob:
		defaultCronJob(o)
	case *HorizontalPodAutoscaler:
		defaultHPA(o)
	case *StatefulSet:
		defaultStatefulSet(o)
	case *Service:
		defaultService(o)
	case *Endpoints:
		defaultEndpoints(o)
	case *Rollout:
		defaultRollout(o)
	case *PersistentVolume:
		defaultPersistentVolume(o)
	case *PersistentVolumeClaim:
		defaultPersistentVolumeClaim(o)
	case *StorageClass:
		defaultStorageClass(o)
	case *Node:
		if o.Status.Allocatable == nil && o.Status.Capacity != nil {
			o.Status.Allocatable = make(ResourceList, len(o.Status.Capacity))
			for k, v := range o.Status.Capacity {
				o.Status.Allocatable[k] = v
			}
		}
	}
}

func defaultPodSpec(s *PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = RestartAlways
	}
	if s.TerminationGracePeriodSeconds == nil {
		g := DefaultTerminationGracePeriodSeconds
		s.TerminationGracePeriodSeconds = &g
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = DefaultDNSPolicy
	}
	if s.SchedulerName == "" {
		s.SchedulerName = DefaultSchedulerName
	}
	for i := range s.Volumes {
		v := &s.Volumes[i]
		if v.ConfigMap != nil && v.ConfigMap.DefaultMode == nil {
			m := DefaultProjectionMode
			v.ConfigMap.DefaultMode = &m
		}
		if v.Secret != nil && v.Secret.DefaultMode == nil {
			m := DefaultProjectionMode
			v.Secret.DefaultMode = &m
		}
	}
	for i := range s.InitContainers {
		defaultContainer(&s.InitContainers[i])
	}
	for i := range s.Containers {
		defaultContainer(&s.Containers[i])
	}
}

func defaultContainer(c *Container) {
	if c.ImagePullPolicy == "" {
		if imageTag(c.Image) == "latest" {
			c.ImagePullPolicy = "Always"
		} else {
			c.ImagePullPolicy = "IfNotPresent"
		}
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = DefaultTerminationMessagePath
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = "File"
	}
	// A limit without a request requests the limit (Kubernetes' SetDefaults_Pod).
	for name, lim := range c.Resources.Limits {
		if _, ok := c.Resources.Requests[name]; !ok {
			if c.Resources.Requests == nil {
				c.Resources.Requests = ResourceList{}
			}
			c.Resources.Requests[name] = lim
		}
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = "TCP"
		}
	}
	for _, p := range []*Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		defaultProbe(p)
	}
	for i := range c.Env {
		if f := c.Env[i].ValueFrom; f != nil && f.FieldRef != nil && f.FieldRef.APIVersion == "" {
			f.FieldRef.APIVersion = "v1"
		}
	}
}

// imageTag returns the tag of an image reference as Kubernetes sees it:
// "latest" when there is neither a tag nor a digest, "" when there is only
// a digest.
func imageTag(image string) string {
	name, _, hasDigest := strings.Cut(image, "@")
	slash := strings.LastIndexByte(name, '/')
	if colon := strings.LastIndexByte(name, ':'); colon > slash {
		return name[colon+1:]
	}
	if hasDigest {
		return ""
	}
	return "latest"
}

func defaultProbe(p *Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if h := p.HTTPGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = "HTTP"
		}
	}
}
