package manifests

import (
	"strings"
	"testing"
)

// An unsupported kind is refused naming the kind and its apiVersion and
// listing the supported kinds; a near miss gets a suggestion.
func TestDecodeUnsupportedKindMessage(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: db}\n", `kind: PodDisruptionBudget (policy/v1) is not supported; supported kinds: `},
		{"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\n", `kind: NetworkPolicy (networking.k8s.io/v1) is not supported; supported kinds: `},
		{"apiVersion: apps/v1\nkind: deployment\nmetadata: {name: web}\n", `kind: deployment (apps/v1) is not supported (did you mean Deployment, apiVersion apps/v1?)`},
	} {
		_, err := Decode([]byte(tc.doc))
		if err == nil {
			t.Fatalf("%q accepted", tc.doc)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) {
			t.Errorf("error %q, want it to contain %q", msg, tc.want)
		}
		for _, k := range Kinds() {
			if !strings.Contains(msg, k.Kind) {
				t.Errorf("error %q does not list the supported kind %s", msg, k.Kind)
			}
		}
	}
	// An unknown field is named with its path.
	_, err := Decode([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: ExternalName, externalName: db.example.com, externalTrafficPolicy: Local}\n"))
	if err == nil || !strings.Contains(err.Error(), `spec.externalTrafficPolicy: unknown field "externalTrafficPolicy"`) {
		t.Errorf("unknown field: %v", err)
	}
}
