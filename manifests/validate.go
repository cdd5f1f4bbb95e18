package manifests

import (
	"fmt"
	"net/netip"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem with one field.
type FieldError struct {
	Path   string // e.g. spec.containers[0].image; empty for the whole object
	Reason string // e.g. required
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// FieldErrors lists every problem found in an object.
type FieldErrors []FieldError

func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// Limits checked by Validate (Kubernetes values).
const (
	MaxConfigDataBytes    = 1 << 20   // total data of a ConfigMap or Secret
	MaxAnnotationsBytes   = 256 << 10 // total size of an object's annotations
	maxConfigKeyLen       = 253
	maxPortNameLen        = 15
	maxGenerateNamePrefix = 253 - 5
)

var (
	configKeyRE   = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	envNameRE     = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	portNameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	portLetterRE  = regexp.MustCompile(`[a-z]`)
	resourceNames = map[string]bool{"cpu": true, "memory": true, "ephemeral-storage": true, "pods": true}
)

type errList struct{ errs FieldErrors }

func (l *errList) add(path, format string, args ...any) {
	l.errs = append(l.errs, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (l *errList) required(path string) { l.add(path, "required") }

func (l *errList) invalid(path string, value any, why string) {
	l.add(path, "invalid value %s: %s", quote(value), why)
}

func (l *errList) unsupported(path, value string, allowed ...string) {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	l.add(path, "unsupported value %q: supported values: %s", value, strings.Join(q, ", "))
}

func (l *errList) result() error {
	if len(l.errs) == 0 {
		return nil
	}
	return capErrors(l.errs)
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(clip(s))
	}
	return fmt.Sprint(v)
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// Validate checks obj, returning nil or FieldErrors.
func Validate(obj Object) error {
	var l errList
	validate(&l, obj)
	return l.result()
}

func validate(l *errList, obj Object) {
	k, err := KindOf(obj)
	if err != nil {
		l.add("kind", "%v", err)
		return
	}
	validateMeta(l, obj.GetObjectMeta(), k)
	switch o := obj.(type) {
	case *Pod:
		validatePodSpec(l, &o.Spec, "spec")
	case *Namespace:
		for i, f := range o.Spec.Finalizers {
			validateQualifiedName(l, fmt.Sprintf("spec.finalizers[%d]", i), f)
		}
		if o.Status.Phase != "" && !oneOf(o.Status.Phase, "Active", "Terminating") {
			l.unsupported("status.phase", o.Status.Phase, "Active", "Terminating")
		}
	case *ConfigMap:
		validateConfigData(l, o.Data, o.BinaryData, "data", "binaryData")
	case *Secret:
		validateConfigData(l, o.StringData, o.Data, "stringData", "data")
		if len(o.Type) > 253 {
			l.invalid("type", o.Type, "must be no more than 253 characters")
		}
		for _, key := range secretTypeKeys[o.Type] {
			_, inData := o.Data[key]
			_, inString := o.StringData[key]
			if !inData && !inString {
				l.add("data["+key+"]", "required for a secret of type %s", o.Type)
			}
		}
	case *Service:
		validateService(l, o)
	case *Endpoints:
		validateEndpoints(l, o)
	case *Node:
		validateNode(l, o)
	case *Event:
		validateEvent(l, o)
	case *Rollout:
		validateRollout(l, o)
	case *ResourceQuota:
		validateResourceQuota(l, o)
	case *LimitRange:
		validateLimitRange(l, o)
	case *Deployment, *ReplicaSet, *DaemonSet, *Job:
		validateWorkload(l, o)
	case *CronJob:
		validateCronJob(l, o)
	case *HorizontalPodAutoscaler:
		validateHPA(l, o)
	case *Role, *ClusterRole, *RoleBinding, *ClusterRoleBinding:
		validateRBAC(l, o)
	case *StatefulSet:
		validateStatefulSet(l, o)
	case *Ingress:
		validateIngress(l, o)
	case *PersistentVolume:
		validatePersistentVolume(l, o)
	case *PersistentVolumeClaim:
		validatePersistentVolumeClaim(l, o)
	case *StorageClass:
		validateStorageClass(l, o)
	}
}

func validateMeta(l *errList, m *ObjectMeta, k Kind) {
	nameCheck := ValidateDNSSubdomain
	switch k.Kind {
	case "Namespace":
		nameCheck = ValidateDNSLabel
	case "Event":
		nameCheck = validateEventName
	}
	switch {
	case m.Name != "":
		if err := nameCheck(m.Name); err != nil {
			l.invalid("metadata.name", m.Name, err.Error())
		}
	case m.GenerateName == "":
		l.add("metadata.name", "required (or metadata.generateName)")
	}
	if m.GenerateName != "" {
		prefix := strings.TrimSuffix(m.GenerateName, "-")
		if len(m.GenerateName) > maxGenerateNamePrefix {
			l.invalid("metadata.generateName", m.GenerateName, fmt.Sprintf("must be no more than %d characters", maxGenerateNamePrefix))
		} else if err := nameCheck(prefix); err != nil {
			l.invalid("metadata.generateName", m.GenerateName, err.Error())
		}
	}
	if k.Namespaced {
		if m.Namespace != "" {
			if err := ValidateDNSLabel(m.Namespace); err != nil {
				l.invalid("metadata.namespace", m.Namespace, err.Error())
			}
		}
	} else if m.Namespace != "" {
		l.add("metadata.namespace", "forbidden: %s is cluster-scoped and has no namespace", k.Kind)
	}
	validateLabels(l, m.Labels, "metadata.labels")
	size := 0
	for _, key := range sortedKeys(m.Annotations) {
		if err := ValidateLabelKey(key); err != nil {
			l.invalid("metadata.annotations", key, "name "+err.Error())
		}
		size += len(key) + len(m.Annotations[key])
	}
	if size > MaxAnnotationsBytes {
		l.add("metadata.annotations", "too long: must have at most %d bytes", MaxAnnotationsBytes)
	}
	for i, o := range m.OwnerReferences {
		p := fmt.Sprintf("metadata.ownerReferences[%d]", i)
		for _, f := range []struct{ name, val string }{{"apiVersion", o.APIVersion}, {"kind", o.Kind}, {"name", o.Name}, {"uid", o.UID}} {
			if f.val == "" {
				l.required(p + "." + f.name)
			}
		}
	}
	for i, f := range m.Finalizers {
		validateQualifiedName(l, fmt.Sprintf("metadata.finalizers[%d]", i), f)
	}
	if m.Generation < 0 {
		l.invalid("metadata.generation", m.Generation, "must be greater than or equal to 0")
	}
}

func validatePathSegment(s string) error {
	if s == "." || s == ".." {
		return fmt.Errorf("may not be '.' or '..'")
	}
	if strings.ContainsAny(s, "/%") {
		return fmt.Errorf("may not contain '/' or '%%'")
	}
	return nil
}

func validateQualifiedName(l *errList, p, v string) {
	if err := ValidateLabelKey(v); err != nil {
		l.invalid(p, v, err.Error())
	}
}

func validateLabels(l *errList, labels map[string]string, p string) {
	if l.tooMany(p, len(labels), MaxLabels) {
		return
	}
	for _, key := range sortedKeys(labels) {
		if err := ValidateLabelKey(key); err != nil {
			l.invalid(p, key, "name "+err.Error())
		}
		if err := ValidateLabelValue(labels[key]); err != nil {
			l.invalid(p+"["+key+"]", labels[key], err.Error())
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func validateConfigKey(l *errList, p, key string) {
	switch {
	case len(key) > maxConfigKeyLen:
		l.invalid(p, key, fmt.Sprintf("must be no more than %d characters", maxConfigKeyLen))
	case !configKeyRE.MatchString(key):
		l.invalid(p, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'")
	case key == "." || key == ".." || strings.HasPrefix(key, ".."):
		l.invalid(p, key, "must not be '.' or '..' or start with '..'")
	}
}

// secretTypeKeys lists the keys Kubernetes requires for built-in secret types.
var secretTypeKeys = map[string][]string{
	"kubernetes.io/tls":              {"tls.crt", "tls.key"},
	"kubernetes.io/dockerconfigjson": {".dockerconfigjson"},
	"kubernetes.io/dockercfg":        {".dockercfg"},
	"kubernetes.io/ssh-auth":         {"ssh-privatekey"},
}

// validateConfigData checks the keys and total size of a ConfigMap's or
// Secret's two data maps; a key may not appear in both.
func validateConfigData(l *errList, text map[string]string, bin map[string][]byte, textPath, binPath string) {
	size := 0
	for _, k := range sortedKeys(text) {
		validateConfigKey(l, textPath, k)
		size += len(text[k])
	}
	for _, k := range sortedKeys(bin) {
		validateConfigKey(l, binPath, k)
		if _, dup := text[k]; dup && textPath == "data" {
			l.invalid(binPath, k, "duplicate of key present in data")
		}
		size += len(bin[k])
	}
	if size > MaxConfigDataBytes {
		l.add("", "too long: data must have at most %d bytes, has %d", MaxConfigDataBytes, size)
	}
}

// validatePodDNSConfig checks spec.dnsConfig as Kubernetes does: at most
// 3 nameservers, IP addresses; at most 32 search domains; named options;
// required with dnsPolicy None.
func validatePodDNSConfig(l *errList, s *PodSpec, p string) {
	c := s.DNSConfig
	if c == nil {
		if s.DNSPolicy == "None" {
			l.add(p+".dnsConfig", "required when dnsPolicy is None")
		}
		return
	}
	p += ".dnsConfig"
	if len(c.Nameservers) > 3 {
		l.add(p+".nameservers", "must not have more than 3 nameservers")
	}
	if s.DNSPolicy == "None" && len(c.Nameservers) == 0 {
		l.add(p+".nameservers", "required when dnsPolicy is None")
	}
	for i, ns := range c.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			l.invalid(fmt.Sprintf("%s.nameservers[%d]", p, i), ns, "must be a valid IP address")
		}
	}
	if len(c.Searches) > 32 {
		l.add(p+".searches", "must not have more than 32 search paths")
	}
	for i, d := range c.Searches {
		if err := ValidateDNSSubdomain(strings.TrimSuffix(d, ".")); err != nil {
			l.invalid(fmt.Sprintf("%s.searches[%d]", p, i), d, err.Error())
		}
	}
	for i, o := range c.Options {
		if o.Name == "" {
			l.required(fmt.Sprintf("%s.options[%d].name", p, i))
		}
	}
}

func validatePodSpec(l *errList, s *PodSpec, p string) {
	if !podSpecWithinLimits(l, s, p) {
		return
	}
	vols := map[string]bool{}
	for i, v := range s.Volumes {
		validateVolume(l, &v, fmt.Sprintf("%s.volumes[%d]", p, i), vols)
	}
	if len(s.Containers) == 0 {
		l.required(p + ".containers")
	}
	names := map[string]bool{}
	for i := range s.InitContainers {
		validateContainer(l, &s.InitContainers[i], fmt.Sprintf("%s.initContainers[%d]", p, i), names, vols, true)
	}
	for i := range s.Containers {
		validateContainer(l, &s.Containers[i], fmt.Sprintf("%s.containers[%d]", p, i), names, vols, false)
	}
	if s.RestartPolicy != "" && !oneOf(s.RestartPolicy, RestartAlways, RestartOnFailure, RestartNever) {
		l.unsupported(p+".restartPolicy", s.RestartPolicy, RestartAlways, RestartOnFailure, RestartNever)
	}
	if s.DNSPolicy != "" && !oneOf(s.DNSPolicy, "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None") {
		l.unsupported(p+".dnsPolicy", s.DNSPolicy, "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
	}
	validatePodDNSConfig(l, s, p)
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		l.invalid(p+".terminationGracePeriodSeconds", *g, "must be greater than or equal to 0")
	}
	if d := s.ActiveDeadlineSeconds; d != nil && *d <= 0 {
		l.invalid(p+".activeDeadlineSeconds", *d, "must be greater than 0")
	}
	if s.NodeName != "" {
		if err := ValidateDNSSubdomain(s.NodeName); err != nil {
			l.invalid(p+".nodeName", s.NodeName, err.Error())
		}
	}
	if s.RuntimeClassName != nil {
		if err := ValidateDNSSubdomain(*s.RuntimeClassName); err != nil {
			l.invalid(p+".runtimeClassName", *s.RuntimeClassName, err.Error())
		}
	}
	for _, f := range []struct{ name, val string }{
		{"serviceAccountName", s.ServiceAccountName}, {"priorityClassName", s.PriorityClassName}, {"schedulerName", s.SchedulerName},
	} {
		if f.val != "" {
			if err := ValidateDNSSubdomain(f.val); err != nil {
				l.invalid(p+"."+f.name, f.val, err.Error())
			}
		}
	}
	for _, f := range []struct{ name, val string }{{"hostname", s.Hostname}, {"subdomain", s.Subdomain}} {
		if f.val != "" {
			if err := ValidateDNSLabel(f.val); err != nil {
				l.invalid(p+"."+f.name, f.val, err.Error())
			}
		}
	}
	validateLabels(l, s.NodeSelector, p+".nodeSelector")
	for i, r := range s.ImagePullSecrets {
		if r.Name == "" {
			l.required(fmt.Sprintf("%s.imagePullSecrets[%d].name", p, i))
		}
	}
	for i, t := range s.Tolerations {
		validateToleration(l, t, fmt.Sprintf("%s.tolerations[%d]", p, i))
	}
	for i, c := range s.TopologySpreadConstraints {
		validateTopologySpreadConstraint(l, c, fmt.Sprintf("%s.topologySpreadConstraints[%d]", p, i))
	}
	if a := s.Affinity; a != nil && a.NodeAffinity != nil {
		na := a.NodeAffinity
		ap := p + ".affinity.nodeAffinity"
		if r := na.RequiredDuringSchedulingIgnoredDuringExecution; r != nil {
			rp := ap + ".requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
			if len(r.NodeSelectorTerms) == 0 {
				l.required(rp)
			}
			for i, t := range r.NodeSelectorTerms {
				validateNodeSelectorTerm(l, t, fmt.Sprintf("%s[%d]", rp, i))
			}
		}
		for i, pt := range na.PreferredDuringSchedulingIgnoredDuringExecution {
			pp := fmt.Sprintf("%s.preferredDuringSchedulingIgnoredDuringExecution[%d]", ap, i)
			if pt.Weight < 1 || pt.Weight > 100 {
				l.invalid(pp+".weight", pt.Weight, "must be in the range 1-100")
			}
			validateNodeSelectorTerm(l, pt.Preference, pp+".preference")
		}
	}
	if sc := s.SecurityContext; sc != nil {
		validateIDs(l, p+".securityContext", sc.RunAsUser, sc.RunAsGroup, sc.FSGroup)
	}
}

func validateTopologySpreadConstraint(l *errList, c TopologySpreadConstraint, p string) {
	if c.MaxSkew <= 0 {
		l.invalid(p+".maxSkew", c.MaxSkew, "must be greater than zero")
	}
	if c.TopologyKey == "" {
		l.required(p + ".topologyKey")
	} else {
		validateQualifiedName(l, p+".topologyKey", c.TopologyKey)
	}
	switch c.WhenUnsatisfiable {
	case DoNotSchedule, ScheduleAnyway:
	case "":
		l.required(p + ".whenUnsatisfiable")
	default:
		l.unsupported(p+".whenUnsatisfiable", c.WhenUnsatisfiable, DoNotSchedule, ScheduleAnyway)
	}
	if c.MinDomains != nil {
		if *c.MinDomains <= 0 {
			l.invalid(p+".minDomains", *c.MinDomains, "must be greater than zero")
		} else if c.WhenUnsatisfiable != DoNotSchedule {
			l.invalid(p+".minDomains", *c.MinDomains, "can only use minDomains if whenUnsatisfiable=DoNotSchedule")
		}
	}
	validateLabelSelector(l, c.LabelSelector, p+".labelSelector")
}

func validateIDs(l *errList, p string, ids ...*int64) {
	names := []string{"runAsUser", "runAsGroup", "fsGroup"}
	for i, id := range ids {
		if id != nil && (*id < 0 || *id > 2147483647) {
			l.invalid(p+"."+names[i], *id, "must be between 0 and 2147483647, inclusive")
		}
	}
}

func validateNodeSelectorTerm(l *errList, t NodeSelectorTerm, p string) {
	for i, r := range t.MatchExpressions {
		rp := fmt.Sprintf("%s.matchExpressions[%d]", p, i)
		validateQualifiedName(l, rp+".key", r.Key)
		switch r.Operator {
		case "In", "NotIn":
			if len(r.Values) == 0 {
				l.add(rp+".values", "required: must be specified when operator is %s", r.Operator)
			}
		case "Exists", "DoesNotExist":
			if len(r.Values) > 0 {
				l.add(rp+".values", "forbidden: may not be specified when operator is %s", r.Operator)
			}
		case "Gt", "Lt":
			if len(r.Values) != 1 {
				l.add(rp+".values", "must have exactly one value when operator is %s", r.Operator)
			} else if _, err := strconv.ParseInt(r.Values[0], 10, 64); err != nil {
				l.invalid(rp+".values[0]", r.Values[0], "must be an integer for operator "+r.Operator)
			}
		default:
			l.unsupported(rp+".operator", r.Operator, "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
		}
	}
}

func validateToleration(l *errList, t Toleration, p string) {
	if t.Key != "" {
		validateQualifiedName(l, p+".key", t.Key)
	}
	switch t.Operator {
	case "", "Equal":
		if t.Key == "" {
			l.invalid(p+".operator", t.Operator, "operator must be Exists when key is empty")
		}
		if err := ValidateLabelValue(t.Value); err != nil {
			l.invalid(p+".value", t.Value, err.Error())
		}
	case "Exists":
		if t.Value != "" {
			l.invalid(p+".value", t.Value, "value must be empty when operator is Exists")
		}
	default:
		l.unsupported(p+".operator", t.Operator, "Equal", "Exists")
	}
	if t.Effect != "" && !oneOf(t.Effect, "NoSchedule", "PreferNoSchedule", "NoExecute") {
		l.unsupported(p+".effect", t.Effect, "NoSchedule", "PreferNoSchedule", "NoExecute")
	}
	if t.TolerationSeconds != nil && t.Effect != "NoExecute" {
		l.invalid(p+".effect", t.Effect, "effect must be NoExecute when tolerationSeconds is set")
	}
}

func validateVolume(l *errList, v *Volume, p string, names map[string]bool) {
	if v.Name == "" {
		l.required(p + ".name")
	} else if err := ValidateDNSLabel(v.Name); err != nil {
		l.invalid(p+".name", v.Name, err.Error())
	} else if names[v.Name] {
		l.add(p+".name", "duplicate value %q", v.Name)
	}
	names[v.Name] = true
	n := 0
	if s := v.EmptyDir; s != nil {
		n++
		if s.Medium != "" && !oneOf(s.Medium, "Memory", "HugePages") {
			l.unsupported(p+".emptyDir.medium", s.Medium, "", "Memory", "HugePages")
		}
		if s.SizeLimit != nil {
			validateQuantity(l, p+".emptyDir.sizeLimit", *s.SizeLimit)
		}
	}
	if s := v.HostPath; s != nil {
		n++
		if s.Path == "" {
			l.required(p + ".hostPath.path")
		}
		if s.Type != "" && !oneOf(s.Type, "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice") {
			l.unsupported(p+".hostPath.type", s.Type, "", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")
		}
	}
	if s := v.ConfigMap; s != nil {
		n++
		if s.Name == "" {
			l.required(p + ".configMap.name")
		}
		validateProjection(l, p+".configMap", s.Items, s.DefaultMode)
	}
	if s := v.Secret; s != nil {
		n++
		if s.SecretName == "" {
			l.required(p + ".secret.secretName")
		}
		validateProjection(l, p+".secret", s.Items, s.DefaultMode)
	}
	if s := v.PersistentVolumeClaim; s != nil {
		n++
		validateClaimVolumeSource(l, p+".persistentVolumeClaim", s)
	}
	switch {
	case n == 0:
		l.add(p, "required: must specify a volume type (emptyDir, hostPath, configMap, secret or persistentVolumeClaim)")
	case n > 1:
		l.add(p, "forbidden: may not specify more than 1 volume type")
	}
}

func validateProjection(l *errList, p string, items []KeyToPath, mode *int32) {
	validMode := func(mp string, m *int32) {
		if m != nil && (*m < 0 || *m > 0777) {
			l.invalid(mp, *m, "must be a number between 0 and 0777 (octal), both inclusive")
		}
	}
	validMode(p+".defaultMode", mode)
	for i, it := range items {
		ip := fmt.Sprintf("%s.items[%d]", p, i)
		if it.Key == "" {
			l.required(ip + ".key")
		} else {
			validateConfigKey(l, ip+".key", it.Key)
		}
		validateRelativePath(l, ip+".path", it.Path)
		validMode(ip+".mode", it.Mode)
	}
}

func validateRelativePath(l *errList, p, v string) {
	switch {
	case v == "":
		l.required(p)
	case path.IsAbs(v):
		l.invalid(p, v, "must be a relative path")
	default:
		for _, part := range strings.Split(v, "/") {
			if part == ".." {
				l.invalid(p, v, "must not contain '..'")
				return
			}
		}
	}
}

func validateContainer(l *errList, c *Container, p string, names, vols map[string]bool, init bool) {
	if c.Name == "" {
		l.required(p + ".name")
	} else if err := ValidateDNSLabel(c.Name); err != nil {
		l.invalid(p+".name", c.Name, err.Error())
	} else if names[c.Name] {
		l.add(p+".name", "duplicate value %q", c.Name)
	}
	names[c.Name] = true
	if strings.TrimSpace(c.Image) == "" {
		l.required(p + ".image")
	} else if c.Image != strings.TrimSpace(c.Image) {
		l.invalid(p+".image", c.Image, "must not have leading or trailing whitespace")
	}
	if c.ImagePullPolicy != "" && !oneOf(c.ImagePullPolicy, "Always", "IfNotPresent", "Never") {
		l.unsupported(p+".imagePullPolicy", c.ImagePullPolicy, "Always", "IfNotPresent", "Never")
	}
	if c.TerminationMessagePolicy != "" && !oneOf(c.TerminationMessagePolicy, "File", "FallbackToLogsOnError") {
		l.unsupported(p+".terminationMessagePolicy", c.TerminationMessagePolicy, "File", "FallbackToLogsOnError")
	}
	portNames := map[string]bool{}
	for i, port := range c.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", p, i)
		if port.Name != "" {
			validatePortName(l, pp+".name", port.Name)
			if portNames[port.Name] {
				l.add(pp+".name", "duplicate value %q", port.Name)
			}
			portNames[port.Name] = true
		}
		if port.ContainerPort < 1 || port.ContainerPort > 65535 {
			l.invalid(pp+".containerPort", port.ContainerPort, "must be between 1 and 65535, inclusive")
		}
		if port.HostPort < 0 || port.HostPort > 65535 {
			l.invalid(pp+".hostPort", port.HostPort, "must be between 1 and 65535, inclusive")
		}
		if port.Protocol != "" && !oneOf(port.Protocol, "TCP", "UDP", "SCTP") {
			l.unsupported(pp+".protocol", port.Protocol, "TCP", "UDP", "SCTP")
		}
	}
	for i, e := range c.Env {
		validateEnv(l, e, fmt.Sprintf("%s.env[%d]", p, i))
	}
	for i, e := range c.EnvFrom {
		ep := fmt.Sprintf("%s.envFrom[%d]", p, i)
		if e.Prefix != "" && !envNameRE.MatchString(e.Prefix) {
			l.invalid(ep+".prefix", e.Prefix, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit")
		}
		switch {
		case e.ConfigMapRef != nil && e.SecretRef != nil:
			l.add(ep, "forbidden: may not have more than one field specified at a time")
		case e.ConfigMapRef != nil:
			validateRefName(l, ep+".configMapRef.name", e.ConfigMapRef.Name)
		case e.SecretRef != nil:
			validateRefName(l, ep+".secretRef.name", e.SecretRef.Name)
		default:
			l.add(ep, "required: must specify configMapRef or secretRef")
		}
	}
	validateResources(l, c.Resources, p+".resources")
	mounts := map[string]bool{}
	for i, m := range c.VolumeMounts {
		mp := fmt.Sprintf("%s.volumeMounts[%d]", p, i)
		if m.Name == "" {
			l.required(mp + ".name")
		} else if !vols[m.Name] {
			l.add(mp+".name", "not found: no volume named %q in spec.volumes", m.Name)
		}
		if m.MountPath == "" {
			l.required(mp + ".mountPath")
		} else if mounts[m.MountPath] {
			l.add(mp+".mountPath", "duplicate value %q: must be unique", m.MountPath)
		}
		mounts[m.MountPath] = true
		if m.SubPath != "" {
			if path.IsAbs(m.SubPath) || strings.Contains("/"+m.SubPath+"/", "/../") {
				l.invalid(mp+".subPath", m.SubPath, "must be a relative path without '..'")
			}
		}
	}
	probes := []struct {
		name string
		pr   *Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}}
	for _, pr := range probes {
		if pr.pr == nil {
			continue
		}
		if init {
			l.add(p+"."+pr.name, "forbidden: may not be set for init containers")
			continue
		}
		validateProbe(l, pr.pr, p+"."+pr.name, pr.name != "readinessProbe")
	}
	if sc := c.SecurityContext; sc != nil {
		validateIDs(l, p+".securityContext", sc.RunAsUser, sc.RunAsGroup)
	}
}

func validateRefName(l *errList, p, name string) {
	if name == "" {
		l.required(p)
	} else if err := ValidateDNSSubdomain(name); err != nil {
		l.invalid(p, name, err.Error())
	}
}

func validatePortName(l *errList, p, name string) {
	switch {
	case len(name) > maxPortNameLen:
		l.invalid(p, name, fmt.Sprintf("must be no more than %d characters", maxPortNameLen))
	case !portNameRE.MatchString(name) || strings.Contains(name, "--"):
		l.invalid(p, name, "must contain only lowercase alphanumerics and '-', start and end with an alphanumeric, and not contain '--'")
	case !portLetterRE.MatchString(name):
		l.invalid(p, name, "must contain at least one letter (a-z)")
	}
}

func validateEnv(l *errList, e EnvVar, p string) {
	if e.Name == "" {
		l.required(p + ".name")
	} else if !envNameRE.MatchString(e.Name) {
		l.invalid(p+".name", e.Name, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit")
	}
	if e.ValueFrom == nil {
		return
	}
	vp := p + ".valueFrom"
	if e.Value != "" {
		l.add(vp, "forbidden: may not be specified when `value` is not empty")
	}
	n := 0
	if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
		n++
		validateRefName(l, vp+".configMapKeyRef.name", r.Name)
		if r.Key == "" {
			l.required(vp + ".configMapKeyRef.key")
		} else {
			validateConfigKey(l, vp+".configMapKeyRef.key", r.Key)
		}
	}
	if r := e.ValueFrom.SecretKeyRef; r != nil {
		n++
		validateRefName(l, vp+".secretKeyRef.name", r.Name)
		if r.Key == "" {
			l.required(vp + ".secretKeyRef.key")
		} else {
			validateConfigKey(l, vp+".secretKeyRef.key", r.Key)
		}
	}
	if r := e.ValueFrom.FieldRef; r != nil {
		n++
		if r.FieldPath == "" {
			l.required(vp + ".fieldRef.fieldPath")
		} else if !validFieldRef(r.FieldPath) {
			l.unsupported(vp+".fieldRef.fieldPath", r.FieldPath, fieldRefPaths...)
		}
	}
	switch {
	case n == 0:
		l.add(vp, "required: must specify one of configMapKeyRef, secretKeyRef or fieldRef")
	case n > 1:
		l.add(vp, "forbidden: may not have more than one field specified at a time")
	}
}

var fieldRefPaths = []string{
	"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
	"spec.serviceAccountName", "status.hostIP", "status.podIP",
	"metadata.labels['<KEY>']", "metadata.annotations['<KEY>']",
}

func validFieldRef(fp string) bool {
	for _, prefix := range []string{"metadata.labels['", "metadata.annotations['"} {
		if strings.HasPrefix(fp, prefix) && strings.HasSuffix(fp, "']") {
			return ValidateLabelKey(strings.TrimSuffix(strings.TrimPrefix(fp, prefix), "']")) == nil
		}
	}
	return oneOf(fp, fieldRefPaths[:7]...)
}

func validateQuantity(l *errList, p string, q Quantity) bool {
	if _, err := ParseQuantity(string(q)); err != nil {
		l.invalid(p, string(q), err.Error())
		return false
	}
	if q.Sign() < 0 {
		l.invalid(p, string(q), "must be greater than or equal to 0")
		return false
	}
	return true
}

func validateResourceName(l *errList, p, name string) {
	if resourceNames[name] {
		return
	}
	if strings.Contains(name, "/") {
		if err := ValidateLabelKey(name); err == nil {
			return
		}
	}
	l.invalid(p, name, "must be a standard resource (cpu, memory, ephemeral-storage, pods) or a prefixed name such as example.com/gpu")
}

func validateResources(l *errList, r ResourceRequirements, p string) {
	okLimits := map[string]bool{}
	for _, name := range sortedKeys(r.Limits) {
		validateResourceName(l, p+".limits", name)
		okLimits[name] = validateQuantity(l, p+".limits["+name+"]", r.Limits[name])
	}
	for _, name := range sortedKeys(r.Requests) {
		validateResourceName(l, p+".requests", name)
		if !validateQuantity(l, p+".requests["+name+"]", r.Requests[name]) {
			continue
		}
		if lim, ok := r.Limits[name]; ok && okLimits[name] && r.Requests[name].Cmp(lim) > 0 {
			l.invalid(p+".requests["+name+"]", string(r.Requests[name]), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim))
		}
	}
}

func validateProbe(l *errList, pr *Probe, p string, successMustBeOne bool) {
	n := 0
	if pr.Exec != nil {
		n++
		if len(pr.Exec.Command) == 0 {
			l.required(p + ".exec.command")
		}
	}
	if h := pr.HTTPGet; h != nil {
		n++
		validatePort(l, p+".httpGet.port", h.Port)
		if h.Scheme != "" && !oneOf(h.Scheme, "HTTP", "HTTPS") {
			l.unsupported(p+".httpGet.scheme", h.Scheme, "HTTP", "HTTPS")
		}
		for i, hd := range h.HTTPHeaders {
			if hd.Name == "" {
				l.required(fmt.Sprintf("%s.httpGet.httpHeaders[%d].name", p, i))
			}
		}
	}
	if t := pr.TCPSocket; t != nil {
		n++
		validatePort(l, p+".tcpSocket.port", t.Port)
	}
	switch {
	case n == 0:
		l.add(p, "required: must specify a handler type (exec, httpGet or tcpSocket)")
	case n > 1:
		l.add(p, "forbidden: may not specify more than 1 handler type")
	}
	for _, f := range []struct {
		name string
		v    int32
	}{
		{"initialDelaySeconds", pr.InitialDelaySeconds}, {"timeoutSeconds", pr.TimeoutSeconds},
		{"periodSeconds", pr.PeriodSeconds}, {"successThreshold", pr.SuccessThreshold}, {"failureThreshold", pr.FailureThreshold},
	} {
		if f.v < 0 {
			l.invalid(p+"."+f.name, f.v, "must be greater than or equal to 0")
		}
	}
	if successMustBeOne && pr.SuccessThreshold > 1 {
		l.invalid(p+".successThreshold", pr.SuccessThreshold, "must be 1")
	}
	if g := pr.TerminationGracePeriodSeconds; g != nil && *g <= 0 {
		l.invalid(p+".terminationGracePeriodSeconds", *g, "must be greater than 0")
	}
}

func validatePort(l *errList, p string, port IntOrString) {
	if port.IsString {
		validatePortName(l, p, port.StrVal)
		return
	}
	if port.IntVal < 1 || port.IntVal > 65535 {
		l.invalid(p, port.IntVal, "must be between 1 and 65535, inclusive")
	}
}

func validateNode(l *errList, n *Node) {
	seen := map[string]bool{}
	for i, t := range n.Spec.Taints {
		tp := fmt.Sprintf("spec.taints[%d]", i)
		if t.Key == "" {
			l.required(tp + ".key")
		} else {
			validateQualifiedName(l, tp+".key", t.Key)
		}
		if err := ValidateLabelValue(t.Value); err != nil {
			l.invalid(tp+".value", t.Value, err.Error())
		}
		switch {
		case t.Effect == "":
			l.required(tp + ".effect")
		case !oneOf(t.Effect, "NoSchedule", "PreferNoSchedule", "NoExecute"):
			l.unsupported(tp+".effect", t.Effect, "NoSchedule", "PreferNoSchedule", "NoExecute")
		}
		if seen[t.Key+"\x00"+t.Effect] {
			l.add(tp, "duplicate value: taints must be unique by key and effect")
		}
		seen[t.Key+"\x00"+t.Effect] = true
	}
	for _, rl := range []struct {
		name string
		list ResourceList
	}{{"status.capacity", n.Status.Capacity}, {"status.allocatable", n.Status.Allocatable}} {
		for _, name := range sortedKeys(rl.list) {
			validateResourceName(l, rl.name, name)
			validateQuantity(l, rl.name+"["+name+"]", rl.list[name])
		}
	}
	for i, c := range n.Status.Conditions {
		cp := fmt.Sprintf("status.conditions[%d]", i)
		if c.Type == "" {
			l.required(cp + ".type")
		}
		if !oneOf(c.Status, ConditionTrue, ConditionFalse, ConditionUnknown) {
			l.unsupported(cp+".status", c.Status, ConditionTrue, ConditionFalse, ConditionUnknown)
		}
	}
	for i, a := range n.Status.Addresses {
		if a.Type == "" {
			l.required(fmt.Sprintf("status.addresses[%d].type", i))
		}
		if a.Address == "" {
			l.required(fmt.Sprintf("status.addresses[%d].address", i))
		}
	}
}

func validateEvent(l *errList, e *Event) {
	io := e.InvolvedObject
	if io.Kind == "" {
		l.required("involvedObject.kind")
	}
	if io.Name == "" {
		l.required("involvedObject.name")
	}
	if io.Namespace != "" && e.Namespace != "" && io.Namespace != e.Namespace {
		l.invalid("involvedObject.namespace", io.Namespace, "does not match event.namespace")
	}
	if e.Type != "" && !oneOf(e.Type, EventNormal, EventWarning) {
		l.unsupported("type", e.Type, EventNormal, EventWarning)
	}
	if e.Count < 0 {
		l.invalid("count", e.Count, "must be greater than or equal to 0")
	}
	if len(e.Reason) > 128 {
		l.invalid("reason", e.Reason, "must be no more than 128 characters")
	}
}

// ValidateUpdate validates newObj and checks that it changes no immutable
// field of oldObj.
func ValidateUpdate(newObj, oldObj Object) error {
	var l errList
	validate(&l, newObj)
	nk, err1 := KindOf(newObj)
	ok, err2 := KindOf(oldObj)
	if err1 != nil || err2 != nil || nk.Kind != ok.Kind {
		l.add("kind", "forbidden: may not change from %s to %s", ok.Kind, nk.Kind)
		return l.result()
	}
	nm, om := newObj.GetObjectMeta(), oldObj.GetObjectMeta()
	if nm.Name != om.Name {
		l.add("metadata.name", "forbidden: field is immutable")
	}
	if nm.Namespace != om.Namespace {
		l.add("metadata.namespace", "forbidden: field is immutable")
	}
	if om.UID != "" && nm.UID != "" && nm.UID != om.UID {
		l.add("metadata.uid", "forbidden: field is immutable")
	}
	if !om.CreationTimestamp.IsZero() && !nm.CreationTimestamp.IsZero() && !nm.CreationTimestamp.Equal(om.CreationTimestamp) {
		l.add("metadata.creationTimestamp", "forbidden: field is immutable")
	}
	switch n := newObj.(type) {
	case *Deployment, *ReplicaSet, *DaemonSet, *Job:
		validateWorkloadUpdate(&l, n, oldObj)
	case *StatefulSet:
		validateStatefulSetUpdate(&l, n, oldObj.(*StatefulSet))
	case *Pod:
		validatePodUpdate(&l, &n.Spec, &oldObj.(*Pod).Spec)
	case *Service:
		validateServiceUpdate(&l, n, oldObj.(*Service))
	case *Rollout:
		validateRolloutUpdate(&l, n, oldObj.(*Rollout))
	case *PersistentVolumeClaim:
		validatePersistentVolumeClaimUpdate(&l, n, oldObj.(*PersistentVolumeClaim))
	case *PersistentVolume:
		validatePersistentVolumeUpdate(&l, n, oldObj.(*PersistentVolume))
	case *StorageClass:
		validateStorageClassUpdate(&l, n, oldObj.(*StorageClass))
	case *ConfigMap:
		o := oldObj.(*ConfigMap)
		if isTrue(o.Immutable) {
			if !isTrue(n.Immutable) {
				l.add("immutable", "forbidden: field is immutable when `immutable` is set")
			}
			if !reflect.DeepEqual(n.Data, o.Data) || !reflect.DeepEqual(n.BinaryData, o.BinaryData) {
				l.add("data", "forbidden: field is immutable when `immutable` is set")
			}
		}
	case *Secret:
		o := oldObj.(*Secret)
		if n.Type != o.Type && o.Type != "" {
			l.add("type", "forbidden: field is immutable")
		}
		if isTrue(o.Immutable) {
			if !isTrue(n.Immutable) {
				l.add("immutable", "forbidden: field is immutable when `immutable` is set")
			}
			if !reflect.DeepEqual(n.Data, o.Data) || len(n.StringData) > 0 {
				l.add("data", "forbidden: field is immutable when `immutable` is set")
			}
		}
	}
	return l.result()
}

func isTrue(b *bool) bool { return b != nil && *b }

// validatePodUpdate allows only the Kubernetes-mutable parts of a pod spec
// to change: container images, activeDeadlineSeconds (set or decreased),
// added tolerations, and nodeName going from "" to a node.
func validatePodUpdate(l *errList, n, o *PodSpec) {
	if len(n.Containers) != len(o.Containers) || len(n.InitContainers) != len(o.InitContainers) {
		l.add("spec", "forbidden: pod updates may not add or remove containers")
		return
	}
	if o.NodeName != "" && n.NodeName != o.NodeName {
		l.add("spec.nodeName", "forbidden: field is immutable once set")
	}
	if o.ActiveDeadlineSeconds != nil {
		if n.ActiveDeadlineSeconds == nil {
			l.add("spec.activeDeadlineSeconds", "forbidden: may not be unset")
		} else if *n.ActiveDeadlineSeconds > *o.ActiveDeadlineSeconds {
			l.add("spec.activeDeadlineSeconds", "forbidden: may not be increased")
		}
	}
	for i, ot := range o.Tolerations {
		found := false
		for _, nt := range n.Tolerations {
			if tolerationCovers(nt, ot) {
				found = true
				break
			}
		}
		if !found {
			l.add(fmt.Sprintf("spec.tolerations[%d]", i), "forbidden: existing toleration may not be removed or changed")
		}
	}
	// Compare the rest with the mutable fields copied over.
	cp := *n
	cp.Containers = append([]Container(nil), n.Containers...)
	cp.InitContainers = append([]Container(nil), n.InitContainers...)
	for i := range cp.Containers {
		cp.Containers[i].Image = o.Containers[i].Image
	}
	for i := range cp.InitContainers {
		cp.InitContainers[i].Image = o.InitContainers[i].Image
	}
	cp.ActiveDeadlineSeconds = o.ActiveDeadlineSeconds
	cp.Tolerations = o.Tolerations
	cp.NodeName = o.NodeName
	if !EqualJSON(&cp, o) {
		l.add("spec", "forbidden: pod updates may not change fields other than spec.containers[*].image, spec.initContainers[*].image, spec.activeDeadlineSeconds, spec.tolerations (only additions) and spec.nodeName (only from empty)")
	}
}

// tolerationCovers reports whether n keeps o (tolerationSeconds may shrink).
func tolerationCovers(n, o Toleration) bool {
	if n.Key != o.Key || n.Operator != o.Operator || n.Value != o.Value || n.Effect != o.Effect {
		return false
	}
	if o.TolerationSeconds == nil {
		return n.TolerationSeconds == nil
	}
	return n.TolerationSeconds != nil && *n.TolerationSeconds <= *o.TolerationSeconds
}
