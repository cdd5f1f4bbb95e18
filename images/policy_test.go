package images

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestEffectivePolicy(t *testing.T) {
	for _, tc := range []struct {
		ref, policy string
		want        PullPolicy
		err         bool
	}{
		{"busybox", "", PullAlways, false}, // implicit :latest
		{"busybox:latest", "", PullAlways, false},
		{"busybox:1.36", "", PullIfNotPresent, false},
		{"busybox@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "", PullIfNotPresent, false},
		{"busybox:1.36", "Always", PullAlways, false},
		{"busybox:latest", "Never", PullNever, false},
		{"busybox:1.36", "Sometimes", "", true},
	} {
		r, err := name.ParseReference(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := effectivePolicy(PullPolicy(tc.policy), r)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("effectivePolicy(%q, %s) = %q, %v; want %q, error %v", tc.policy, tc.ref, got, err, tc.want, tc.err)
		}
	}
}
