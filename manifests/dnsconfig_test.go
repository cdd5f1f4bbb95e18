package manifests

import (
	"strings"
	"testing"
)

func TestValidatePodDNSConfig(t *testing.T) {
	two := "2"
	tests := []struct {
		name   string
		policy string
		cfg    *PodDNSConfig
		want   string // a substring of the error; empty for valid
	}{
		{"cluster first without config", "ClusterFirst", nil, ""},
		{"cluster first adds", "ClusterFirst", &PodDNSConfig{Searches: []string{"corp.example."}, Options: []PodDNSConfigOption{{Name: "ndots", Value: &two}}}, ""},
		{"none", "None", &PodDNSConfig{Nameservers: []string{"10.0.0.10", "fd00::a"}}, ""},
		{"none without config", "None", nil, "spec.dnsConfig: required when dnsPolicy is None"},
		{"none without nameservers", "None", &PodDNSConfig{Searches: []string{"a.b"}}, "spec.dnsConfig.nameservers: required when dnsPolicy is None"},
		{"bad nameserver", "Default", &PodDNSConfig{Nameservers: []string{"dns.local"}}, `spec.dnsConfig.nameservers[0]: invalid value "dns.local": must be a valid IP address`},
		{"four nameservers", "None", &PodDNSConfig{Nameservers: []string{"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"}}, "must not have more than 3 nameservers"},
		{"bad search", "ClusterFirst", &PodDNSConfig{Searches: []string{"Bad_Domain"}}, `spec.dnsConfig.searches[0]: invalid value "Bad_Domain"`},
		{"unnamed option", "ClusterFirst", &PodDNSConfig{Options: []PodDNSConfigOption{{Value: &two}}}, "spec.dnsConfig.options[0].name: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPod()
			p.Spec.DNSPolicy, p.Spec.DNSConfig = tt.policy, tt.cfg
			err := Validate(p)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("valid: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	// The field survives a round trip (DeepCopy is JSON).
	p := validPod()
	p.Spec.DNSPolicy = "None"
	p.Spec.DNSConfig = &PodDNSConfig{Nameservers: []string{"10.0.0.10"}, Options: []PodDNSConfigOption{{Name: "ndots", Value: &two}}}
	cp := DeepCopy(p).(*Pod)
	if c := cp.Spec.DNSConfig; c == nil || c.Nameservers[0] != "10.0.0.10" || *c.Options[0].Value != "2" {
		t.Fatalf("copied dnsConfig %+v", c)
	}
}
