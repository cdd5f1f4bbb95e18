package manifests

import (
	"strings"
	"testing"
)

func TestDecodeRBAC(t *testing.T) {
	good := `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team}
rules:
- apiGroups: [""]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments]
  resourceNames: [web]
  verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: all-logs}
rules:
- apiGroups: ["*"]
  resources: ["*/log"]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods, namespace: team}
subjects:
- kind: User
  name: bob
  apiGroup: rbac.authorization.k8s.io
- kind: Group
  name: ops
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ops-view}
subjects: [{kind: Group, name: ops}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
`
	objs, err := Decode([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o)
		if err := Validate(o); err != nil {
			t.Errorf("%T: %v", o, err)
		}
	}
	if r := objs[0].(*Role); len(r.Rules) != 2 || r.Rules[1].ResourceNames[0] != "web" {
		t.Fatalf("role decoded as %+v", r.Rules)
	}

	bad := []struct{ doc, want string }{
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: agg}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {a: b}}]
`, "aggregationRule: not supported"},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: sa, namespace: team}
subjects: [{kind: ServiceAccount, name: default, namespace: team}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
`, "subjects[0].kind: ServiceAccount is not supported"},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: team}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, escalate]}]
`, `rules[0].verbs[1]: unsupported value "escalate"`},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: team}
rules: [{apiGroups: [""], resources: [pods], verbs: [get], nonResourceURLs: [/healthz]}]
`, "rules[0].nonResourceURLs: not supported"},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: team}
rules: [{resources: [pods], verbs: [get]}]
`, "rules[0].apiGroups: required"},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: team}
rules: [{apiGroups: [""], resources: [Pods/Log/x], verbs: [get]}]
`, "rules[0].resources[0]: invalid value"},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: team}
rules: [{apiGroups: [""], resources: [pods], verb: [get]}]
`, `rules[0].verb: unknown field "verb"`},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: b}
subjects: [{kind: User, name: bob}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
`, `roleRef.kind: unsupported value "Role"`},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: b, namespace: team}
subjects: [{kind: User, name: bob, namespace: team}]
roleRef: {kind: Role, name: r}
`, "roleRef.apiGroup: required"},
		{`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: b, namespace: team}
subjects: [{kind: User, name: bob, namespace: team}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
`, "subjects[0].namespace: forbidden"},
		{`apiVersion: rbac.authorization.k8s.io/v1beta1
kind: Role
metadata: {name: r, namespace: team}
`, `apiVersion: "rbac.authorization.k8s.io/v1beta1" is not supported`},
	}
	for _, c := range bad {
		objs, err := Decode([]byte(c.doc))
		if err == nil {
			for _, o := range objs {
				Default(o)
				if err = Validate(o); err != nil {
					break
				}
			}
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\ngot %v, want %q", c.doc, err, c.want)
		}
	}
}
