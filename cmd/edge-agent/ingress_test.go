package main

import (
	"strings"
	"testing"
)

func TestIngressAddr(t *testing.T) {
	for _, tc := range []struct {
		host string
		port int
		want string
	}{{"", 0, ""}, {"", 18080, ":18080"}, {"192.0.2.7", 443, "192.0.2.7:443"}, {"::1", 18443, "[::1]:18443"}} {
		got, err := ingressAddr(tc.host, tc.port, "--ingress-http-port")
		if err != nil || got != tc.want {
			t.Errorf("ingressAddr(%q, %d) = %q, %v; want %q", tc.host, tc.port, got, err, tc.want)
		}
	}
	for _, p := range []int{-1, 65536} {
		if _, err := ingressAddr("", p, "--ingress-https-port"); err == nil || !strings.Contains(err.Error(), "--ingress-https-port") {
			t.Errorf("port %d: %v", p, err)
		}
	}
}
