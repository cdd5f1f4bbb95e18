package manifests

import (
	"strings"
	"testing"
)

const serviceYAML = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
    nodePort: 30080
  - name: dns
    port: 53
    protocol: UDP
---
apiVersion: v1
kind: Endpoints
metadata:
  name: manual
subsets:
- addresses:
  - ip: 192.168.1.10
  ports:
  - port: 5432
`

func TestDecodeDefaultServiceAndEndpoints(t *testing.T) {
	objs, err := Decode([]byte(serviceYAML))
	if err != nil {
		t.Fatal(err)
	}
	svc := objs[0].(*Service)
	Default(svc)
	if err := Validate(svc); err != nil {
		t.Fatal(err)
	}
	p := svc.Spec.Ports
	if svc.Namespace != "default" || svc.Spec.SessionAffinity != "None" || p[0].Protocol != "TCP" || p[0].TargetPort != FromString("http") ||
		p[1].TargetPort != FromInt(53) || p[1].Protocol != "UDP" || p[0].NodePort != 30080 {
		t.Fatalf("defaulted service: %+v", svc.Spec)
	}
	ep := objs[1].(*Endpoints)
	Default(ep)
	if err := Validate(ep); err != nil || ep.Subsets[0].Ports[0].Protocol != "TCP" {
		t.Fatalf("endpoints: %+v %v", ep, err)
	}
	for _, short := range []string{"svc", "services", "ep", "endpoints"} {
		if _, err := KindForResource(short); err != nil {
			t.Errorf("resource %q: %v", short, err)
		}
	}
}

func TestValidateService(t *testing.T) {
	base := func() *Service {
		s := &Service{ObjectMeta: ObjectMeta{Name: "web", Namespace: "default"}}
		s.Spec.Selector = map[string]string{"app": "web"}
		s.Spec.Ports = []ServicePort{{Name: "http", Port: 80}}
		Default(s)
		return s
	}
	cases := map[string]struct {
		mut  func(s *Service)
		want string
	}{
		"load balancer": {func(s *Service) { s.Spec.Type = "LoadBalancer" }, `spec.type: unsupported value "LoadBalancer": load balancers are not supported`},
		"unknown type":  {func(s *Service) { s.Spec.Type = "Mesh" }, `spec.type: unsupported value "Mesh"`},
		"no ports":      {func(s *Service) { s.Spec.Ports = nil }, "spec.ports: required"},
		"unnamed second": {func(s *Service) {
			s.Spec.Ports = append(s.Spec.Ports, ServicePort{Port: 81, Protocol: "TCP", TargetPort: FromInt(81)})
		}, "spec.ports[1].name: required when a service has more than one port"},
		"bad port":              {func(s *Service) { s.Spec.Ports[0].Port = 70000 }, "spec.ports[0].port: invalid value 70000"},
		"bad protocol":          {func(s *Service) { s.Spec.Ports[0].Protocol = "SCTP" }, `spec.ports[0].protocol: unsupported value "SCTP"`},
		"nodePort on ClusterIP": {func(s *Service) { s.Spec.Ports[0].NodePort = 30001 }, `spec.ports[0].nodePort: forbidden: may not be used when type is "ClusterIP"`},
		"nodePort range":        {func(s *Service) { s.Spec.Type = "NodePort"; s.Spec.Ports[0].NodePort = 80 }, "spec.ports[0].nodePort: invalid value 80: provided port is not in the valid range. The range of valid ports is 30000-32767"},
		"bad clusterIP":         {func(s *Service) { s.Spec.ClusterIP = "10.96.0.300" }, `spec.clusterIP: invalid value "10.96.0.300"`},
		"headless NodePort":     {func(s *Service) { s.Spec.Type = "NodePort"; s.Spec.ClusterIP = "None" }, `may not be "None" for a NodePort service`},
		"externalName missing":  {func(s *Service) { s.Spec.Type = "ExternalName" }, "spec.externalName: required"},
		"bad named targetPort":  {func(s *Service) { s.Spec.Ports[0].TargetPort = FromString("HTTP!") }, "spec.ports[0].targetPort: invalid value"},
	}
	for name, tc := range cases {
		s := base()
		tc.mut(s)
		err := Validate(s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
	if err := Validate(base()); err != nil {
		t.Fatalf("valid service: %v", err)
	}
	// The cluster IP is immutable once set.
	old := base()
	old.Spec.ClusterIP, old.Spec.ClusterIPs = "10.96.0.1", []string{"10.96.0.1"}
	next := base()
	next.Spec.ClusterIP, next.Spec.ClusterIPs = "10.96.0.2", []string{"10.96.0.2"}
	if err := ValidateUpdate(next, old); err == nil || !strings.Contains(err.Error(), "spec.clusterIP: invalid value \"10.96.0.2\": field is immutable") {
		t.Fatalf("changed clusterIP: %v", err)
	}
}
