package edgectl

import (
	"reflect"
	"testing"
)

func TestParseLabelArgs(t *testing.T) {
	c, err := parseLabelArgs([]string{"tier=demo", "app-", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.set, map[string]string{"tier": "demo", "empty": ""}) || !reflect.DeepEqual(c.remove, []string{"app"}) {
		t.Errorf("got %+v", c)
	}
	for _, bad := range [][]string{nil, {"novalue"}, {"-"}, {"bad key=1"}, {"k=bad value"}, {"k=1", "k-"}} {
		if _, err := parseLabelArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLabelChangeApply(t *testing.T) {
	c, _ := parseLabelArgs([]string{"tier=prod", "old-"})
	orig := map[string]string{"tier": "demo", "old": "x", "keep": "y"}
	if _, _, err := c.apply(orig, false); err == nil {
		t.Error("changing a value without --overwrite accepted")
	}
	got, changed, err := c.apply(orig, true)
	if err != nil || !changed || !reflect.DeepEqual(got, map[string]string{"tier": "prod", "keep": "y"}) {
		t.Errorf("overwrite: %v %v %v", got, changed, err)
	}
	if orig["tier"] != "demo" {
		t.Error("apply modified its input")
	}
	same, _ := parseLabelArgs([]string{"keep=y", "missing-"})
	if _, changed, err := same.apply(orig, false); err != nil || changed {
		t.Errorf("no-op change: changed %v err %v", changed, err)
	}
}

func TestParseLabelTarget(t *testing.T) {
	r, rest, err := parseLabelTarget([]string{"pod", "hello", "a=b"}, "ns1")
	if err != nil || r.kind.Kind != "Pod" || r.name != "hello" || r.namespace != "ns1" || len(rest) != 1 {
		t.Errorf("pod hello: %+v %v %v", r, rest, err)
	}
	r, _, err = parseLabelTarget([]string{"node/n1", "a=b"}, "ns1")
	if err != nil || r.kind.Kind != "Node" || r.name != "n1" || r.namespace != "" {
		t.Errorf("node/n1: %+v %v", r, err)
	}
	for _, bad := range [][]string{nil, {"pod"}, {"gadget", "x", "a=b"}, {"pod/", "a=b"}} {
		if _, _, err := parseLabelTarget(bad, "default"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
