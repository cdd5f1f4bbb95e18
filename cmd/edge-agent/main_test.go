package main

import (
	"reflect"
	"testing"
)

func TestParseLabels(t *testing.T) {
	got, err := parseLabels(" site=a, tier=edge ,empty=")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"site": "a", "tier": "edge", "empty": ""}; !reflect.DeepEqual(got, want) {
		t.Fatalf("labels %v, want %v", got, want)
	}
	if got, err := parseLabels(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	if _, err := parseLabels("site"); err == nil {
		t.Fatal("a label without = was accepted")
	}
}
