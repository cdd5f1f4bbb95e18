package edgectl

import (
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestParseWaitFor(t *testing.T) {
	for _, bad := range []string{"", "condition=", "ready", "jsonpath={.status.phase", "jsonpath={.status.phase}Running", "jsonpath=status"} {
		if _, err := parseWaitFor(bad); err == nil {
			t.Errorf("--for=%q accepted", bad)
		}
	}
	c, err := parseWaitFor("condition=Ready")
	if err != nil || c.condType != "Ready" || c.condValue != "True" {
		t.Errorf("condition=Ready: %+v %v", c, err)
	}
	c, err = parseWaitFor("condition=Ready=False")
	if err != nil || c.condValue != "False" {
		t.Errorf("condition=Ready=False: %+v %v", c, err)
	}
	c, err = parseWaitFor("jsonpath={.status.phase}=Running")
	if err != nil || !c.hasValue || c.pathValue != "Running" {
		t.Errorf("jsonpath: %+v %v", c, err)
	}
	c, err = parseWaitFor("delete")
	if err != nil || !c.deleted {
		t.Errorf("delete: %+v %v", c, err)
	}
}

func TestWaitConditionMet(t *testing.T) {
	p := samplePod()
	p.Spec.NodeName = "node-b"
	p.Status.Conditions = []manifests.PodCondition{{Type: "PodScheduled", Status: "True"}, {Type: "Ready", Status: "False"}}
	check := func(forCond string, obj manifests.Object, want bool) {
		t.Helper()
		c, err := parseWaitFor(forCond)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.met(obj)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("--for=%s on %v: got %v, want %v", forCond, obj != nil, got, want)
		}
	}
	check("condition=Ready", p, false)
	check("condition=ready=false", p, true)
	check("condition=PodScheduled", p, true)
	check("condition=Initialized", p, false)
	check("condition=Ready", nil, false)
	check("delete", p, false)
	check("delete", nil, true)
	check("jsonpath={.status.phase}=Running", p, true)
	check("jsonpath={.status.phase}=Pending", p, false)
	check("jsonpath={.spec.nodeName}", p, true)
	check("jsonpath={.spec.hostname}", p, false)
	check(`jsonpath={.status.conditions[?(@.type=="Ready")].status}=False`, p, true)
	check("jsonpath={.status.conditions[1].type}=Ready", p, true)
	check("jsonpath={.spec.containers[3].name}=x", p, false)
	check("jsonpath={.spec.terminationGracePeriodSeconds}=30", p, true)
	p.Status.Conditions[1].Status = "True"
	check("condition=Ready", p, true)
}

func TestParseJSONPathErrors(t *testing.T) {
	for _, bad := range []string{"{status}", "{.a[}", "{.a[x]}", "{..a}", "{.a[?(@.b>1)]}"} {
		if _, err := parseJSONPath(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
