package edgectl

import (
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// statefulSetHeaders are the columns of a StatefulSet, as kubectl prints them.
func statefulSetHeaders(wide bool) []string {
	h := []string{"NAME", "READY", "AGE"}
	if wide {
		h = append(h, "CONTAINERS", "IMAGES")
	}
	return h
}

// statefulSetRow shows ready pods over wanted replicas.
func statefulSetRow(ss *manifests.StatefulSet, name, created string, wide bool) []string {
	row := []string{name, fmt.Sprintf("%d/%d", ss.Status.ReadyReplicas, int32OrZero(ss.Spec.Replicas)), created}
	if wide {
		var names, images []string
		for _, c := range ss.Spec.Template.Spec.Containers {
			names = append(names, c.Name)
			images = append(images, c.Image)
		}
		row = append(row, orNone(strings.Join(names, ",")), orNone(strings.Join(images, ",")))
	}
	return row
}

// controllerRevisionHeaders are the columns of a ControllerRevision.
func controllerRevisionHeaders() []string {
	return []string{"NAME", "CONTROLLER", "REVISION", "AGE"}
}

// controllerRevisionRow names the revision's controller as kind.group/name.
func controllerRevisionRow(r *manifests.ControllerRevision, name, created string) []string {
	ctl := "<none>"
	if ref := manifests.GetControllerOf(r); ref != nil {
		ctl = strings.ToLower(ref.Kind) + "/" + ref.Name
		if g, _, ok := strings.Cut(ref.APIVersion, "/"); ok {
			ctl = strings.ToLower(ref.Kind) + "." + g + "/" + ref.Name
		}
	}
	return []string{name, ctl, fmt.Sprint(r.Revision), created}
}
