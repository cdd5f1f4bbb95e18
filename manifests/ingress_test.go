package manifests

import (
	"strings"
	"testing"
)

const ingressYAML = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  ingressClassName: edge
  defaultBackend:
    service: {name: fallback, port: {number: 80}}
  tls:
  - hosts: [a.example.com, "*.example.org"]
    secretName: web-tls
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: a, port: {name: http}}}}
  - host: "*.example.org"
    http:
      paths:
      - {pathType: ImplementationSpecific, backend: {service: {name: b, port: {number: 8080}}}}
`

// TestIngressDecode: a complete Ingress decodes strictly, validates, and
// round-trips through the stored form.
func TestIngressDecode(t *testing.T) {
	objs, err := Decode([]byte(ingressYAML))
	if err != nil {
		t.Fatal(err)
	}
	ing, ok := objs[0].(*Ingress)
	if !ok {
		t.Fatalf("decoded %T", objs[0])
	}
	Default(ing)
	if err := Validate(ing); err != nil {
		t.Fatal(err)
	}
	if ing.Namespace != "default" || *ing.Spec.IngressClassName != "edge" || len(ing.Spec.Rules) != 2 ||
		ing.Spec.Rules[0].HTTP.Paths[1].Backend.Service.Port.Name != "http" ||
		ing.Spec.TLS[0].SecretName != "web-tls" || ing.Spec.DefaultBackend.Service.Name != "fallback" {
		t.Errorf("decoded %+v", ing.Spec)
	}
	k, err := KindForResource("ing")
	if err != nil || k.Kind != "Ingress" || k.APIVersion != "networking.k8s.io/v1" {
		t.Errorf("ing: %v %v", k, err)
	}
	cp := DeepCopy(ing).(*Ingress)
	if !EqualJSON(cp, ing) {
		t.Error("deep copy differs")
	}
}

// TestIngressRefusals: unknown fields, resource backends, bad hosts,
// paths and ports are refused naming the field.
func TestIngressRefusals(t *testing.T) {
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "  ingressClassName: edge\n", "  ingressClassName: edge\n  backend: {serviceName: x}\n", `spec.backend: unknown field "backend"`},
		{"resource backend", "service: {name: fallback, port: {number: 80}}", "resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: static}", `spec.defaultBackend.resource: not supported: only service backends are supported`},
		{"both ports", "port: {number: 8080}", "port: {number: 8080, name: http}", `spec.rules[1].http.paths[0].backend.service.port: may not have both name and number`},
		{"no port", "port: {number: 8080}", "port: {}", `spec.rules[1].http.paths[0].backend.service.port: required`},
		{"port range", "port: {number: 8080}", "port: {number: 70000}", `spec.rules[1].http.paths[0].backend.service.port.number: invalid value 70000`},
		{"bad port name", "port: {name: http}", "port: {name: HTTP_1}", `spec.rules[0].http.paths[1].backend.service.port.name`},
		{"no service name", "service: {name: a, port: {number: 80}}", "service: {port: {number: 80}}", `spec.rules[0].http.paths[0].backend.service.name: required`},
		{"no backend", "backend: {service: {name: a, port: {number: 80}}}", "backend: {}", `spec.rules[0].http.paths[0].backend.service: required`},
		{"pathType", "pathType: Exact", "pathType: Regex", `spec.rules[0].http.paths[1].pathType: unsupported value "Regex"`},
		{"no pathType", "{path: /exact, pathType: Exact,", "{path: /exact,", `spec.rules[0].http.paths[1].pathType: required`},
		{"relative path", "path: /exact", "path: exact", `spec.rules[0].http.paths[1].path: invalid value "exact": must be an absolute path`},
		{"no path", "{path: /exact, pathType: Exact,", "{pathType: Exact,", `spec.rules[0].http.paths[1].path: required for pathType Exact`},
		{"bad host", "- host: a.example.com", "- host: A_B.example.com", `spec.rules[0].host: invalid value "A_B.example.com"`},
		{"bad wildcard", `- host: "*.example.org"`, `- host: "a.*.example.org"`, `spec.rules[1].host: invalid value "a.*.example.org": a wildcard host must start with "*."`},
		{"ip host", "- host: a.example.com", "- host: 1.2.3.4:80", `spec.rules[0].host: invalid value "1.2.3.4:80"`},
		{"ip address", "- host: a.example.com", "- host: 10.0.0.1", `spec.rules[0].host: invalid value "10.0.0.1": must be a DNS name, not an IP address`},
		{"tls host", "hosts: [a.example.com,", "hosts: [\"*\",", `spec.tls[0].hosts[0]: invalid value "*"`},
		{"no secret", "    secretName: web-tls\n", "", `spec.tls[0].secretName: required`},
		{"class", "ingressClassName: edge", "ingressClassName: Edge!", `spec.ingressClassName: invalid value "Edge!"`},
		{"wrong type", "pathType: Prefix", "pathType: [Prefix]", `spec.rules[0].http.paths[0].pathType`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(ingressYAML, tc.old) {
				t.Fatalf("%q not in the manifest", tc.old)
			}
			doc := strings.Replace(ingressYAML, tc.old, tc.new, 1)
			objs, err := Decode([]byte(doc))
			if err == nil {
				Default(objs[0])
				err = Validate(objs[0])
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// Neither rules nor a default backend.
	objs, err := Decode([]byte("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: e}\nspec: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(objs[0]); err == nil || !strings.Contains(err.Error(), "spec: either defaultBackend or rules must be specified") {
		t.Errorf("empty spec: %v", err)
	}
}

func TestIngressHostMatches(t *testing.T) {
	for _, tc := range []struct {
		rule, host string
		want       bool
	}{
		{"", "anything.example.com", true},
		{"a.example.com", "a.example.com", true},
		{"A.example.com", "a.example.com", true},
		{"a.example.com", "b.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "a.example.org", false},
	} {
		if got := IngressHostMatches(tc.rule, tc.host); got != tc.want {
			t.Errorf("IngressHostMatches(%q, %q) = %v, want %v", tc.rule, tc.host, got, tc.want)
		}
	}
}
