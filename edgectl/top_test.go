package edgectl

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/edgeorch/edgeorch/sim"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// TestTop runs wasm pods on two agents with real wazero runtimes that
// report their usage every 200ms, and reads it with edgectl top.
func TestTop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{
		Nodes: 2,
		Agent: func(_ int, cfg *edgeagent.Config) {
			rt, err := wasm.New(context.Background(), wasm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rt.Close(context.Background()) })
			cfg.Runtimes = map[string]runtime.Runtime{rt.Name(): rt}
			cfg.PassImages = false
			cfg.UsageInterval = 200 * time.Millisecond
		},
	})
	ctl := ctlAt(t, c.URL)
	mustOK(t, ctl("", "push", testmodules.Path(t, "hello"), "--name", "hello:v1"), "push")
	mustOK(t, ctl(fmt.Sprintf(helloPod, "hello-a", "hello", sim.NodeName(0)), "apply", "-f", "-"), "apply hello-a")
	mustOK(t, ctl(fmt.Sprintf(helloPod, "hello-b", "hello", sim.NodeName(1)), "apply", "-f", "-"), "apply hello-b")

	// Nodes: CPU from the second sample on, percentages of allocatable.
	nodeRow := regexp.MustCompile(`(?m)^(sim-node-[01]) +([0-9]+)m +[0-9]+% +([0-9]+)Mi +[0-9]+%$`)
	eventually(t, 30*time.Second, func() error {
		r := ctl("", "top", "nodes")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, "NAME         CPU(cores)   CPU%   MEMORY(bytes)   MEMORY%\n") {
			return fmt.Errorf("header:\n%s", r.stdout)
		}
		rows := nodeRow.FindAllStringSubmatch(r.stdout, -1)
		if len(rows) != 2 || rows[0][1] != "sim-node-0" || rows[1][1] != "sim-node-1" {
			return fmt.Errorf("rows:\n%s", r.stdout)
		}
		for _, row := range rows {
			if row[3] == "0" {
				return fmt.Errorf("node %s uses no memory:\n%s", row[1], r.stdout)
			}
		}
		return nil
	})
	out := mustOK(t, ctl("", "top", "node", sim.NodeName(1), "--no-headers"), "top node NAME")
	if rows := nodeRow.FindAllStringSubmatch(out, -1); len(rows) != 1 || rows[0][1] != "sim-node-1" || strings.Contains(out, "NAME") {
		t.Errorf("top node sim-node-1 --no-headers:\n%s", out)
	}

	// Pods: the linear memory of each module, no CPU figure (wasm).
	podRow := regexp.MustCompile(`(?m)^(hello-[ab]) +<unknown> +([0-9]+)Mi$`)
	eventually(t, 30*time.Second, func() error {
		r := ctl("", "top", "pods")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s\n%s", r.code, r.stderr, ctl("", "get", "pods", "-o", "wide").stdout)
		}
		if rows := podRow.FindAllStringSubmatch(r.stdout, -1); !strings.HasPrefix(r.stdout, "NAME      CPU(cores)   MEMORY(bytes)\n") || len(rows) != 2 {
			return fmt.Errorf("top pods:\n%s", r.stdout)
		}
		return nil
	})
	var pm client.PodMetrics
	if err := json.Unmarshal([]byte(mustOK(t, ctl("", "top", "pod", "hello-a", "-o", "json"), "top pod -o json")), &pm); err != nil {
		t.Fatal(err)
	}
	if pm.Kind != "PodMetrics" || pm.APIVersion != "metrics.k8s.io/v1beta1" || pm.Metadata.Name != "hello-a" || len(pm.Containers) != 1 ||
		pm.Containers[0].Name != "hello" || pm.Containers[0].Usage["memory"].Value() <= 0 || pm.Timestamp.IsZero() {
		t.Fatalf("top pod hello-a -o json: %+v", pm)
	}
	t.Logf("wasm pod hello-a: %v", pm.Containers[0].Usage)
	out = mustOK(t, ctl("", "top", "pods", "-A", "-l", "app=hello", "--containers"), "top pods -A --containers")
	if !regexp.MustCompile(`^NAMESPACE +POD +NAME +CPU\(cores\) +MEMORY\(bytes\)\ndefault +hello-a +hello +<unknown> +[0-9]+Mi\ndefault +hello-b +hello +<unknown> +[0-9]+Mi\n$`).MatchString(out) {
		t.Errorf("top pods -A -l app=hello --containers:\n%s", out)
	}
	var list struct {
		Kind  string               `json:"kind"`
		Items []client.NodeMetrics `json:"items"`
	}
	if err := json.Unmarshal([]byte(mustOK(t, ctl("", "top", "nodes", "-o", "json"), "top nodes -o json")), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "NodeMetricsList" || len(list.Items) != 2 || list.Items[0].Usage["cpu"] == "" || list.Items[0].Window == "0s" {
		t.Fatalf("top nodes -o json: %+v", list)
	}

	// Selected, but nothing reported: a Node with no agent, a pod on it.
	mustOK(t, ctl("apiVersion: v1\nkind: Node\nmetadata: {name: ghost}\n", "apply", "-f", "-"), "apply node ghost")
	mustOK(t, ctl(fmt.Sprintf(helloPod, "haunted", "ghost", "ghost"), "apply", "-f", "-"), "apply pod on ghost")
	if r := ctl("", "top", "node", "ghost"); r.code != 1 || r.stderr != "error: metrics not available yet\n" {
		t.Errorf("top node ghost: %+v", r)
	}
	if r := ctl("", "top", "pod", "haunted"); r.code != 1 || r.stderr != "error: metrics not available yet for pod default/haunted\n" {
		t.Errorf("top pod haunted: %+v", r)
	}
	if r := ctl("", "top", "pods", "-l", "app=ghost"); r.code != 1 || r.stderr != "error: metrics not available yet\n" {
		t.Errorf("top pods -l app=ghost: %+v", r)
	}
	out = mustOK(t, ctl("", "top", "nodes"), "top nodes with ghost")
	if !regexp.MustCompile(`(?m)^ghost +<unknown> +<unknown> +<unknown> +<unknown>$`).MatchString(out) || len(nodeRow.FindAllString(out, -1)) != 2 {
		t.Errorf("top nodes with a node that never reported:\n%s", out)
	}
	if r := ctl("", "top", "pods", "-n", "empty"); r.code != 0 || r.stderr != "No resources found in empty namespace.\n" {
		t.Errorf("top pods in an empty namespace: %+v", r)
	}
	if r := ctl("", "top", "pod", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, "Error from server (NotFound)") {
		t.Errorf("top pod nosuch: %+v", r)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"top"}, "you must specify nodes or pods"},
		{[]string{"top", "nodes", "a", "-l", "x=y"}, "only one of NAME or --selector can be provided"},
		{[]string{"top", "pods", "--sort-by", "disk"}, `--sort-by "disk": want cpu or memory`},
		{[]string{"top", "pods", "-o", "yaml"}, `--output "yaml": top prints a table or json`},
		{[]string{"top", "pods", "-l", "app in (x"}, `-l "app in (x"`},
		{[]string{"top", "pod", "x", "-A"}, "a pod NAME cannot be used with -A"},
	} {
		if r := ctl("", tc.args...); r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v, want %q", tc.args, r, tc.want)
		}
	}
}

func TestTopFormats(t *testing.T) {
	for _, tc := range []struct {
		q     string
		nano  int64
		milli string
	}{
		{"1234567n", 1234567, "2m"},
		{"250m", 250_000_000, "250m"},
		{"2", 2_000_000_000, "2000m"},
		{"0n", 0, "0m"},
	} {
		if got := nanoOf(manifests.Quantity(tc.q)); got != tc.nano || milliCores(got) != tc.milli {
			t.Errorf("%s: %d nanocores (%s), want %d (%s)", tc.q, got, milliCores(got), tc.nano, tc.milli)
		}
	}
	if got := mebibytes(34*1024*1024 + 1023); got != "34Mi" {
		t.Errorf("mebibytes: %s", got)
	}
	if got := percent(512, 2048); got != "25%" {
		t.Errorf("percent: %s", got)
	}
	if got := percent(1, 0); got != unknown {
		t.Errorf("percent of nothing: %s", got)
	}
}
