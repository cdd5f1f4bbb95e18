package controller

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/edgeorch/edgeorch/manifests"
)

// Copy returns a deep copy of a cached object, to modify before a write.
// T is a pointer to a kind, e.g. *manifests.Pod.
func Copy[T manifests.Object](obj T) (T, error) {
	var zero T
	t := reflect.TypeOf(obj)
	if t == nil || t.Kind() != reflect.Pointer {
		return zero, fmt.Errorf("copy %T: not a pointer", obj)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return zero, fmt.Errorf("copy %s: %w", obj.GetObjectMeta().Name, err)
	}
	v := reflect.New(t.Elem())
	if err := json.Unmarshal(raw, v.Interface()); err != nil {
		return zero, fmt.Errorf("copy %s: %w", obj.GetObjectMeta().Name, err)
	}
	return v.Interface().(T), nil
}
