package manifests

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzDecode checks that Decode never panics, and that every object it
// returns re-encodes to JSON that decodes strictly to the same object.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"testdata/pod-exported.yaml", "testdata/config.yaml", "examples/hello.yaml"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data)
		if err != nil {
			if objs != nil {
				t.Fatalf("objects returned with error %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		for _, obj := range objs {
			raw, err := json.Marshal(obj)
			if err != nil {
				t.Fatalf("marshal decoded %T: %v", obj, err)
			}
			back, err := DecodeJSONStrict(raw)
			if err != nil {
				t.Fatalf("re-decode %s: %v", raw, err)
			}
			raw2, err := json.Marshal(back)
			if err != nil {
				t.Fatalf("marshal re-decoded: %v", err)
			}
			if string(raw) != string(raw2) {
				t.Fatalf("round trip changed the object:\n%s\n%s", raw, raw2)
			}
			// Default and Validate must not panic on anything Decode accepts.
			Default(obj)
			_ = Validate(obj)
			_ = ValidateUpdate(DeepCopy(obj), obj)
		}
	})
}
