package envvar

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

var errNotFound = errors.New("not found")

type fakeSources struct {
	cms     map[string]*manifests.ConfigMap
	secrets map[string]*manifests.Secret
}

func (f fakeSources) ConfigMap(_ context.Context, ns, name string) (*manifests.ConfigMap, error) {
	if cm, ok := f.cms[ns+"/"+name]; ok {
		return cm, nil
	}
	return nil, errors.Join(errNotFound, errors.New(`configmaps "`+name+`" not found`))
}

func (f fakeSources) Secret(_ context.Context, ns, name string) (*manifests.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, errors.Join(errNotFound, errors.New(`secrets "`+name+`" not found`))
}

func (fakeSources) IsNotFound(err error) bool { return errors.Is(err, errNotFound) }

func TestResolve(t *testing.T) {
	yes := true
	src := fakeSources{
		cms:     map[string]*manifests.ConfigMap{"prod/cfg": {Data: map[string]string{"level": "debug", "B": "b", "A": "a"}}},
		secrets: map[string]*manifests.Secret{"prod/creds": {Data: map[string][]byte{"token": []byte("s3cret")}}},
	}
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "prod", UID: "u-1", Labels: map[string]string{"app": "web"}}}
	pod.Spec.NodeName = "node-a"
	c := &manifests.Container{
		Name:    "c",
		EnvFrom: []manifests.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &manifests.OptionalNameRef{Name: "cfg"}}, {SecretRef: &manifests.OptionalNameRef{Name: "absent", Optional: &yes}}},
		Env: []manifests.EnvVar{
			{Name: "CFG_A", Value: "override"},
			{Name: "LEVEL", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.KeySelector{Name: "cfg", Key: "level"}}},
			{Name: "TOKEN", ValueFrom: &manifests.EnvVarSource{SecretKeyRef: &manifests.KeySelector{Name: "creds", Key: "token"}}},
			{Name: "POD", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NODE", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "IP", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "APP", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "MISSING_OK", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.KeySelector{Name: "nope", Key: "k", Optional: &yes}}},
			{Name: "URL", Value: "http://$(POD).$(NODE):80/$(UNDEFINED)/$$(POD)"},
		},
	}
	got, err := Resolve(context.Background(), pod, c, src, PodFields{HostIP: "10.0.0.1", PodIP: "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []runtime.KeyValue{
		{Key: "CFG_A", Value: "override"}, {Key: "CFG_B", Value: "b"}, {Key: "CFG_level", Value: "debug"},
		{Key: "LEVEL", Value: "debug"}, {Key: "TOKEN", Value: "s3cret"}, {Key: "POD", Value: "web"},
		{Key: "NODE", Value: "node-a"}, {Key: "IP", Value: "10.0.0.1"}, {Key: "APP", Value: "web"},
		{Key: "URL", Value: "http://web.node-a:80/$(UNDEFINED)/$(POD)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("env\n got %v\nwant %v", got, want)
	}
	if args := ExpandAll([]string{"--level=$(LEVEL)", "$(TOKEN)"}, got); !reflect.DeepEqual(args, []string{"--level=debug", "s3cret"}) {
		t.Fatalf("args %v", args)
	}
}

func TestResolveErrors(t *testing.T) {
	src := fakeSources{cms: map[string]*manifests.ConfigMap{"default/cfg": {Data: map[string]string{"a": "1"}}}}
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default"}}
	cases := []struct {
		env  manifests.EnvVar
		want string
	}{
		{manifests.EnvVar{Name: "X", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.KeySelector{Name: "gone", Key: "a"}}}, `configmaps "gone" not found`},
		{manifests.EnvVar{Name: "X", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.KeySelector{Name: "cfg", Key: "b"}}}, "couldn't find key b in ConfigMap default/cfg"},
		{manifests.EnvVar{Name: "X", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "spec.bogus"}}}, `unsupported fieldRef "spec.bogus"`},
	}
	for _, c := range cases {
		_, err := Resolve(context.Background(), pod, &manifests.Container{Env: []manifests.EnvVar{c.env}}, src, PodFields{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("env %+v: error %v, want %q", c.env, err, c.want)
		}
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "x"}
	for in, want := range map[string]string{"$(A)": "x", "$$(A)": "$(A)", "$(B)": "$(B)", "a$": "a$", "$(A": "$(A", "$A": "$A", "p$(A)s": "pxs"} {
		if got := Expand(in, env); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}
