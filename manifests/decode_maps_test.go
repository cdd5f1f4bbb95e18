package manifests

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// jsonKeys is n JSON members "k0":"v", "k1":"v", ...
func jsonKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	return b.String()
}

// yamlKeys is a YAML flow mapping of n keys {k0: v, k1: v, ...}.
func yamlKeys(n int) string {
	return "{" + strings.ReplaceAll(strings.ReplaceAll(jsonKeys(n), `"`, ""), ":", ": ") + "}"
}

// yamlBlockKeys is n lines "<indent>k0: v", "<indent>k1: v", ...
func yamlBlockKeys(n int, indent string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%sk%d: v\n", indent, i)
	}
	return b.String()
}

// TestDecodeMapKeyLimits checks that every map is bounded while it is
// decoded, from JSON and from YAML: label maps to MaxLabels keys, other
// maps to MaxMapKeys, with an error naming the field and the limit.
func TestDecodeMapKeyLimits(t *testing.T) {
	pod := func(meta, spec string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"` + meta + `},"spec":{"containers":[{"name":"c","image":"i"}]` + spec + `}}`
	}
	deployment := func(matchLabels, templateLabels string) string {
		return `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{` + matchLabels + `}},` +
			`"template":{"metadata":{"labels":{` + templateLabels + `}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}`
	}
	cm := func(data string) string {
		return `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{` + data + `}}`
	}
	tests := []struct {
		name, in, want string // want "" means accepted
	}{
		{"1,000 labels", pod(`,"labels":{`+jsonKeys(1000)+`}`, ""), ""},
		{"1,001 labels", pod(`,"labels":{`+jsonKeys(1001)+`}`, ""), "metadata.labels: too many: more than 1000 keys, must have at most 1000"},
		{"280,000 labels", pod(`,"labels":{`+jsonKeys(280000)+`}`, ""), "metadata.labels: too many: more than 1000 keys, must have at most 1000"},
		{"1,001 node selector terms", pod("", `,"nodeSelector":{`+jsonKeys(1001)+`}`), "spec.nodeSelector: too many: more than 1000 keys"},
		{"1,001 matchLabels", deployment(jsonKeys(1001), `"k0":"v"`), "spec.selector.matchLabels: too many: more than 1000 keys"},
		{"1,001 template labels", deployment(`"k0":"v"`, jsonKeys(1001)), "spec.template.metadata.labels: too many: more than 1000 keys"},
		{"1,001 service selector terms", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"selector":{` + jsonKeys(1001) + `},"ports":[{"port":80}]}}`,
			"spec.selector: too many: more than 1000 keys"},
		{"10,001 annotations", pod(`,"annotations":{`+jsonKeys(10001)+`}`, ""), "metadata.annotations: too many: more than 10000 keys, must have at most 10000"},
		{"10,000 ConfigMap keys", cm(jsonKeys(10000)), ""},
		{"10,001 ConfigMap keys", cm(jsonKeys(10001)), "data: too many: more than 10000 keys, must have at most 10000"},
		{"280,000 ConfigMap keys", cm(jsonKeys(280000)), "data: too many: more than 10000 keys, must have at most 10000"},
		{"280,000 Secret keys", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{` + jsonKeys(280000) + `}}`,
			"stringData: too many: more than 10000 keys"},
		{"10,001 resource limits", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{` +
			strings.ReplaceAll(jsonKeys(10001), `"v"`, `"1"`) + `}}}]}}`,
			"spec.containers[0].resources.limits: too many: more than 10000 keys"},
		{"10,001 unknown fields of an object", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n",` + jsonKeys(10001) + `}}`,
			"metadata: too many: more than 10000 keys"},
		{"10,001 top-level fields", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n"},` + jsonKeys(10001) + `}`,
			"too many: more than 10000 keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{"json", "yaml"} {
				in := tc.in
				if format == "yaml" {
					if len(in) > 1<<20 {
						continue // the YAML parser itself is the cost there (edgectl only)
					}
					// JSON is YAML: a flow document the YAML parser reads
					// (the JSON decoder is skipped by a leading comment).
					in = "# yaml\n" + in
				}
				objs, err := Decode([]byte(in))
				switch {
				case tc.want == "" && err != nil:
					t.Fatalf("%s: %v", format, err)
				case tc.want == "":
					if len(objs) != 1 {
						t.Fatalf("%s: %d objects", format, len(objs))
					}
				case err == nil:
					t.Fatalf("%s: accepted, want error %q", format, tc.want)
				case !strings.Contains(err.Error(), tc.want):
					t.Fatalf("%s: error %q, want %q", format, err, tc.want)
				}
			}
			if tc.want == "" {
				return
			}
			if _, err := DecodeJSONStrict([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeJSONStrict: error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestDecodeMapLimitNamesTheObject checks that the YAML walker, which
// knows the object, names it in the error of a map too large.
func TestDecodeMapLimitNamesTheObject(t *testing.T) {
	in := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n" + yamlBlockKeys(10001, "  ")
	_, err := Decode([]byte(in))
	if want := `document 1 (Namespace "n"): metadata: too many: more than 10000 keys, must have at most 10000`; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}

// TestDecodeMapLimitThroughMergeKeys checks that keys brought in by YAML
// merge keys count against the limit too.
func TestDecodeMapLimitThroughMergeKeys(t *testing.T) {
	merged := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: &a " + yamlKeys(600) + "\n  labels:\n    <<: *a\n    extra: v\n" +
		"spec:\n  containers: [{name: c, image: i}]\n"
	// 600 merged labels pass (the annotations hold them too); 600 merged
	// plus 401 explicit ones do not.
	if _, err := Decode([]byte(merged)); err != nil {
		t.Fatalf("600 merged labels: %v", err)
	}
	var more strings.Builder
	for i := range 400 {
		fmt.Fprintf(&more, "    x%d: v\n", i)
	}
	merged = strings.Replace(merged, "    extra: v\n", "    extra: v\n"+more.String(), 1)
	_, err := Decode([]byte(merged))
	if err == nil || !strings.Contains(err.Error(), "metadata.labels: too many: more than 1000 keys") {
		t.Fatalf("merged labels: error %v, want too many", err)
	}
}

// TestDecodeHugeMapsCostLittle checks that a 3.8 MB object of 280,000
// tiny labels or ConfigMap keys is refused after reading only the first
// keys: quickly and with little memory (before the limit, 1.1 s and
// 321 MiB for 250,000 labels).
func TestDecodeHugeMapsCostLittle(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"labels", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{` + jsonKeys(280000) + `}},"spec":{"containers":[{"name":"c","image":"i"}]}}`},
		{"ConfigMap data", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{` + jsonKeys(280000) + `}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := DecodeJSONStrict(in)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "too many: more than") {
				t.Fatalf("error %v, want too many", err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes refused in %v, %d KiB allocated: %v", len(in), took, alloc>>10, err)
			if alloc > 32<<20 {
				t.Fatalf("allocated %d MiB to refuse it, want under 32 MiB", alloc>>20)
			}
		})
	}
}
