package edgectl

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

const redactTestValue = "PLAINTEXT-edgectl-value-6d2e"

func redactTestSecret() *manifests.Secret {
	s := &manifests.Secret{Type: "Opaque",
		Data:       map[string][]byte{"password": []byte(redactTestValue)},
		StringData: map[string]string{"token": redactTestValue + "-str"}}
	s.Name, s.Namespace = "db", "default"
	s.Labels = map[string]string{"app": "db"}
	return s
}

// leaks reports whether out shows the test value (clear or base64).
func leaks(out string) bool {
	return strings.Contains(out, redactTestValue) ||
		strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(redactTestValue)))
}

func TestSecretValuesRedacted(t *testing.T) {
	for _, tc := range []struct {
		format string
		single bool
		marker string // printed instead of the value
		shown  string // printed with --show-secrets
	}{
		{outputJSON, true, `"password": "<redacted: 28 bytes>"`, base64.StdEncoding.EncodeToString([]byte(redactTestValue))},
		{outputJSON, false, `"token": "<redacted: 32 bytes>"`, redactTestValue + "-str"},
		{outputYAML, true, "password: '<redacted: 28 bytes>'", base64.StdEncoding.EncodeToString([]byte(redactTestValue))},
		{outputYAML, false, "token: '<redacted: 32 bytes>'", redactTestValue + "-str"},
		{"jsonpath={.data.password}", true, "<redacted: 28 bytes>", base64.StdEncoding.EncodeToString([]byte(redactTestValue))},
		{"jsonpath={.items[*].stringData.token}", false, "<redacted: 32 bytes>", redactTestValue + "-str"},
	} {
		objs := []manifests.Object{redactTestSecret()}
		if !tc.single {
			cm := &manifests.ConfigMap{Data: map[string]string{"k": "visible"}}
			cm.Name, cm.Namespace = "cfg", "default"
			objs = append(objs, cm)
		}
		var buf bytes.Buffer
		if err := printObjects(&buf, tc.format, objs, tc.single); err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		out := buf.String()
		if leaks(out) {
			t.Errorf("%s (single %v) prints the secret:\n%s", tc.format, tc.single, out)
		}
		if !strings.Contains(out, tc.marker) {
			t.Errorf("%s (single %v) lacks %q:\n%s", tc.format, tc.single, tc.marker, out)
		}
		if tc.format == outputYAML && (!strings.Contains(out, "app: db") || !strings.Contains(out, "kind: Secret")) {
			t.Errorf("yaml lost the metadata:\n%s", out)
		}
		if !tc.single && !strings.HasPrefix(tc.format, outputJSONPath) && !strings.Contains(out, "visible") {
			t.Errorf("%s: the configmap is redacted too:\n%s", tc.format, out)
		}

		buf.Reset()
		if err := printObjectsShowing(&buf, tc.format, objs, tc.single, true); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), tc.shown) || strings.Contains(buf.String(), "redacted") {
			t.Errorf("%s (single %v) with --show-secrets lacks %q:\n%s", tc.format, tc.single, tc.shown, buf.String())
		}
	}
}

func TestDescribeSecretPrintsSizesOnly(t *testing.T) {
	var buf bytes.Buffer
	if err := describeObject(&buf, redactTestSecret(), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if leaks(out) || strings.Contains(out, redactTestValue+"-str") {
		t.Fatalf("describe prints the secret:\n%s", out)
	}
	for _, want := range []string{`password:\s+28 bytes`, `token:\s+32 bytes`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
}

func TestGetSecretRedactedAgainstControlPlane(t *testing.T) {
	ctl := ctlAt(t, startControlPlane(t))
	manifest := `apiVersion: v1
kind: Secret
metadata:
  name: db
data:
  password: ` + base64.StdEncoding.EncodeToString([]byte(redactTestValue)) + "\n"
	mustOK(t, ctl(manifest, "apply", "-f", "-"), "apply")
	for _, args := range [][]string{
		{"get", "secret", "db", "-o", "yaml"},
		{"get", "secrets", "-o", "json"},
		{"get", "secret", "db", "-o", "jsonpath={.data.password}"},
		{"describe", "secret", "db"},
	} {
		out := mustOK(t, ctl("", args...), strings.Join(args, " "))
		if leaks(out) {
			t.Errorf("%v prints the secret:\n%s", args, out)
		}
		if !strings.Contains(out, "28 bytes") {
			t.Errorf("%v lacks the size:\n%s", args, out)
		}
	}
	out := mustOK(t, ctl("", "get", "secret", "db", "-o", "jsonpath={.data.password}", "--show-secrets"), "get --show-secrets")
	if out != base64.StdEncoding.EncodeToString([]byte(redactTestValue)) {
		t.Errorf("--show-secrets printed %q", out)
	}
}
