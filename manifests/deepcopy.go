package manifests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// DeepCopy returns an independent copy of obj (a JSON round trip, so only
// the fields that are serialized are copied). DeepCopy(nil) is nil.
func DeepCopy(obj Object) Object {
	if obj == nil {
		return nil
	}
	t := reflect.TypeOf(obj)
	if t.Kind() != reflect.Pointer || reflect.ValueOf(obj).IsNil() {
		return obj
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		// Every kind is plain data; failing here means a broken object
		// (e.g. a time outside years 0-9999) that no caller can recover.
		panic(fmt.Sprintf("deep copy %T: %v", obj, err))
	}
	out := reflect.New(t.Elem()).Interface().(Object)
	if err := json.Unmarshal(raw, out); err != nil {
		panic(fmt.Sprintf("deep copy %T: %v", obj, err))
	}
	return out
}

// EqualJSON reports whether a and b encode to the same JSON (false when
// either cannot be encoded).
func EqualJSON(a, b any) bool {
	ra, err1 := json.Marshal(a)
	rb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ra, rb)
}
