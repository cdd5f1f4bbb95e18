package manifests

import "fmt"

// StatefulSet volumeClaimTemplates: each template becomes, for the pod with
// ordinal N, the claim <template>-<name>-N and a pod volume of the
// template's name that mounts it.

func defaultStatefulSetClaims(ss *StatefulSet) {
	for i := range ss.Spec.VolumeClaimTemplates {
		c := &ss.Spec.VolumeClaimTemplates[i]
		phase := c.Status.Phase
		defaultPersistentVolumeClaim(c)
		c.Status.Phase = phase // a template has no status
	}
}

// statefulSetClaimVolumes returns the pod volumes of ss's claim templates
// for the pod podName ("" gives placeholder claim names, for validation).
func statefulSetClaimVolumes(ss *StatefulSet, podName string) []Volume {
	var out []Volume
	for _, t := range ss.Spec.VolumeClaimTemplates {
		claim := t.Name + "-claim"
		if podName != "" {
			claim = StatefulSetClaimName(t.Name, podName)
		}
		out = append(out, Volume{Name: t.Name, VolumeSource: VolumeSource{PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	}
	return out
}

// StatefulSetPodVolumes returns the volumes of ss's pod podName: the
// template's, with a volume of the same name as a claim template replaced
// by that claim (as Kubernetes does).
func StatefulSetPodVolumes(ss *StatefulSet, podName string) []Volume {
	claims := statefulSetClaimVolumes(ss, podName)
	byName := map[string]bool{}
	for _, v := range claims {
		byName[v.Name] = true
	}
	var out []Volume
	for _, v := range ss.Spec.Template.Spec.Volumes {
		if !byName[v.Name] {
			out = append(out, v)
		}
	}
	return append(out, claims...)
}

func validateStatefulSetClaims(l *errList, ss *StatefulSet) {
	seen := map[string]bool{}
	for i := range ss.Spec.VolumeClaimTemplates {
		t := &ss.Spec.VolumeClaimTemplates[i]
		p := fmt.Sprintf("spec.volumeClaimTemplates[%d]", i)
		switch {
		case t.Name == "":
			l.required(p + ".metadata.name")
		case seen[t.Name]:
			l.add(p+".metadata.name", "duplicate value %q", t.Name)
		default:
			if err := ValidateDNSLabel(t.Name); err != nil {
				l.invalid(p+".metadata.name", t.Name, err.Error())
			}
		}
		seen[t.Name] = true
		if t.Namespace != "" && t.Namespace != ss.Namespace {
			l.invalid(p+".metadata.namespace", t.Namespace, "must be empty or the StatefulSet's namespace")
		}
		var sub errList
		validatePersistentVolumeClaim(&sub, t)
		for _, e := range sub.errs {
			l.errs = append(l.errs, FieldError{Path: p + "." + e.Path, Reason: e.Reason})
		}
		if t.Spec.VolumeName != "" {
			l.add(p+".spec.volumeName", "forbidden: every replica needs its own volume (leave it empty; claims are bound or provisioned per replica)")
		}
		if t.Status.Phase != "" || len(t.Status.Capacity) > 0 || len(t.Status.AccessModes) > 0 {
			l.add(p+".status", "forbidden: a claim template has no status")
		}
	}
}
