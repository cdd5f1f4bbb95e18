package edgectl

import (
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestParseResourceArgs(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		want     string // kind:names;...
		withKind bool
		wantErr  bool
	}{
		{args: []string{"pods"}, want: "Pod:"},
		{args: []string{"po", "a", "b"}, want: "Pod:a,b"},
		{args: []string{"pod/a", "pod/b", "cm/c"}, want: "Pod:a,b;ConfigMap:c", withKind: true},
		{args: []string{"pods,cm"}, want: "Pod:;ConfigMap:", withKind: true},
		{args: []string{"Node", "n1"}, want: "Node:n1"},
		{args: []string{}, wantErr: true},
		{args: []string{"widgets"}, wantErr: true},
		{args: []string{"pods,cm", "x"}, wantErr: true},
		{args: []string{"pod", "pod/x"}, wantErr: true},
		{args: []string{"pod/"}, wantErr: true},
		{args: []string{"pod/a", "b"}, wantErr: true},
	} {
		got, withKind, err := parseResourceArgs(tc.args)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: no error, got %+v", tc.args, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		s := ""
		for i, r := range got {
			if i > 0 {
				s += ";"
			}
			s += r.Kind.Kind + ":"
			for j, n := range r.Names {
				if j > 0 {
					s += ","
				}
				s += n
			}
		}
		if s != tc.want || withKind != tc.withKind {
			t.Errorf("%q: got %q withKind %v, want %q %v", tc.args, s, withKind, tc.want, tc.withKind)
		}
	}
}

func TestObjectNameIsGroupQualified(t *testing.T) {
	d := &manifests.Deployment{TypeMeta: manifests.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}}
	d.Name = "web"
	p := &manifests.Pod{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"}}
	p.Name = "hello"
	if got := objectName(d); got != "deployment.apps/web" {
		t.Errorf("objectName(deployment) = %q, want deployment.apps/web", got)
	}
	if got := objectName(p); got != "pod/hello" {
		t.Errorf("objectName(pod) = %q, want pod/hello", got)
	}
}
