package envvar

import (
	"context"
	"reflect"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

func svc(ns, name, ip string, ports ...manifests.ServicePort) manifests.Service {
	s := manifests.Service{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: ns}}
	s.Spec.ClusterIP = ip
	s.Spec.Ports = ports
	return s
}

func TestServiceEnv(t *testing.T) {
	redis := svc("prod", "redis-master", "10.96.0.11", manifests.ServicePort{Port: 6379})
	web := svc("prod", "web", "10.96.0.12",
		manifests.ServicePort{Name: "http", Port: 80},
		manifests.ServicePort{Name: "dns-udp", Protocol: "UDP", Port: 53})
	for _, tc := range []struct {
		name string
		svcs []manifests.Service
		want []runtime.KeyValue
	}{
		{"none", nil, nil},
		{"single unnamed port", []manifests.Service{redis}, []runtime.KeyValue{
			{Key: "REDIS_MASTER_SERVICE_HOST", Value: "10.96.0.11"},
			{Key: "REDIS_MASTER_SERVICE_PORT", Value: "6379"},
			{Key: "REDIS_MASTER_PORT", Value: "tcp://10.96.0.11:6379"},
			{Key: "REDIS_MASTER_PORT_6379_TCP", Value: "tcp://10.96.0.11:6379"},
			{Key: "REDIS_MASTER_PORT_6379_TCP_PROTO", Value: "tcp"},
			{Key: "REDIS_MASTER_PORT_6379_TCP_PORT", Value: "6379"},
			{Key: "REDIS_MASTER_PORT_6379_TCP_ADDR", Value: "10.96.0.11"},
		}},
		{"named ports, udp", []manifests.Service{web}, []runtime.KeyValue{
			{Key: "WEB_SERVICE_HOST", Value: "10.96.0.12"},
			{Key: "WEB_SERVICE_PORT", Value: "80"},
			{Key: "WEB_SERVICE_PORT_HTTP", Value: "80"},
			{Key: "WEB_SERVICE_PORT_DNS_UDP", Value: "53"},
			{Key: "WEB_PORT", Value: "tcp://10.96.0.12:80"},
			{Key: "WEB_PORT_80_TCP", Value: "tcp://10.96.0.12:80"},
			{Key: "WEB_PORT_80_TCP_PROTO", Value: "tcp"},
			{Key: "WEB_PORT_80_TCP_PORT", Value: "80"},
			{Key: "WEB_PORT_80_TCP_ADDR", Value: "10.96.0.12"},
			{Key: "WEB_PORT_53_UDP", Value: "udp://10.96.0.12:53"},
			{Key: "WEB_PORT_53_UDP_PROTO", Value: "udp"},
			{Key: "WEB_PORT_53_UDP_PORT", Value: "53"},
			{Key: "WEB_PORT_53_UDP_ADDR", Value: "10.96.0.12"},
		}},
		{"other namespace, headless, no cluster IP skipped", []manifests.Service{
			svc("default", "redis-master", "10.96.0.1", manifests.ServicePort{Port: 6379}),
			svc("prod", "db", "None", manifests.ServicePort{Port: 5432}),
			svc("prod", "ext", ""),
		}, nil},
		{"ipv6", []manifests.Service{svc("prod", "v6", "fd00::1", manifests.ServicePort{Port: 80})}, []runtime.KeyValue{
			{Key: "V6_SERVICE_HOST", Value: "fd00::1"},
			{Key: "V6_SERVICE_PORT", Value: "80"},
			{Key: "V6_PORT", Value: "tcp://[fd00::1]:80"},
			{Key: "V6_PORT_80_TCP", Value: "tcp://[fd00::1]:80"},
			{Key: "V6_PORT_80_TCP_PROTO", Value: "tcp"},
			{Key: "V6_PORT_80_TCP_PORT", Value: "80"},
			{Key: "V6_PORT_80_TCP_ADDR", Value: "fd00::1"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ServiceEnv("prod", tc.svcs)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
	// Sorted by service name whatever the input order.
	got := ServiceEnv("prod", []manifests.Service{web, redis})
	if got[0].Key != "REDIS_MASTER_SERVICE_HOST" {
		t.Errorf("first = %s, want REDIS_MASTER_SERVICE_HOST", got[0].Key)
	}
}

func TestResolveServiceLinks(t *testing.T) {
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "prod"}}
	c := &manifests.Container{Env: []manifests.EnvVar{
		{Name: "REDIS_MASTER_SERVICE_PORT", Value: "1"}, // container env wins
		{Name: "URL", Value: "redis://$(REDIS_MASTER_SERVICE_HOST):$(REDIS_MASTER_SERVICE_PORT)"},
	}}
	f := PodFields{Services: []manifests.Service{svc("prod", "redis-master", "10.96.0.11", manifests.ServicePort{Port: 6379})}}
	got, err := Resolve(context.Background(), pod, c, fakeSources{}, f)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range got {
		m[kv.Key] = kv.Value
	}
	if m["REDIS_MASTER_SERVICE_HOST"] != "10.96.0.11" || m["REDIS_MASTER_SERVICE_PORT"] != "1" || m["URL"] != "redis://10.96.0.11:1" {
		t.Errorf("env = %v", m)
	}
	if len(got) != 8 {
		t.Errorf("%d variables, want 8: %v", len(got), got)
	}
}
