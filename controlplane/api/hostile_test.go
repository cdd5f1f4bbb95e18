package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// hostileCase is one hostile request and the error it must get.
type hostileCase struct {
	name string
	verb string
	body []byte
	want string // substring of the Invalid error message
}

// applyBody wraps an object (JSON text) in an apply request.
func applyBody(object string) []byte {
	return []byte(`{"object":` + object + `}`)
}

// podJSON is a pod named name whose metadata and first container get the
// extra JSON members given (each starting with a comma, or empty).
func podJSON(name, meta, container, spec string) string {
	return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `"` + meta + `},` +
		`"spec":{"containers":[{"name":"main","image":"hello"` + container + `}]` + spec + `}}`
}

// configMapJSON is the ConfigMap "big" of namespace default with the
// JSON members given (data, binaryData).
func configMapJSON(members string) string {
	return `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big","namespace":"default"},` + members + `}`
}

// secretJSON is the Secret "big" of namespace default with the JSON
// members given (data, stringData).
func secretJSON(members string) string {
	return `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"big","namespace":"default"},` + members + `}`
}

func repeatJSON(n int, item func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = item(i)
	}
	return strings.Join(parts, ",")
}

func hostileCases() []hostileCase {
	deep := func(n int, open, close string) string {
		return strings.Repeat(open, n) + strings.Repeat(close, n)
	}
	keys := func(n int) string {
		return repeatJSON(n, func(i int) string { return fmt.Sprintf(`"k%d":"v"`, i) })
	}
	labels := func(n int) string {
		return `,"labels":{` + keys(n) + `}`
	}
	return []hostileCase{
		{"100k-deep arrays", messaging.VerbApply, []byte(deep(100000, "[", "]")), "nesting deeper than 100 levels"},
		{"100k-deep arrays, unclosed", messaging.VerbGet, []byte(strings.Repeat("[", 100000)), "nesting deeper than 100 levels"},
		{"100k-deep objects in the object", messaging.VerbApply, applyBody(strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)), "nesting deeper than 100 levels"},
		{"90-deep value in an annotation", messaging.VerbApply,
			applyBody(podJSON("deep", `,"annotations":{"a":`+deep(90, "[", "]")+`}`, "", "")), "nesting deeper than 64 levels"},
		{"300 KiB of brackets in a string", messaging.VerbApply,
			applyBody(podJSON("brackets", `,"annotations":{"a":"`+strings.Repeat("[", 300<<10)+`"}`, "", "")), "metadata.annotations: too long: must have at most 262144 bytes"},
		{"invalid UTF-8 in a label value", messaging.VerbApply,
			applyBody(podJSON("utf", ",\"labels\":{\"app\":\"caf\xe9\"}", "", "")), "object.metadata.labels.app: invalid value: not valid UTF-8"},
		{"invalid UTF-8 in a label key", messaging.VerbApply,
			applyBody(podJSON("utf", ",\"labels\":{\"\xffapp\":\"x\"}", "", "")), `object.metadata.labels: invalid field name "\ufffdapp": not valid UTF-8`},
		{"invalid UTF-8 in the name", messaging.VerbApply,
			applyBody(podJSON("bad\xc3\x28", "", "", "")), "object.metadata.name: invalid value: not valid UTF-8"},
		{"invalid UTF-8 in an env value", messaging.VerbApply,
			applyBody(podJSON("utf", "", ",\"env\":[{\"name\":\"A\",\"value\":\"\xed\xa0\x80\"}]", "")), "object.spec.containers[0].env[0].value: invalid value: not valid UTF-8"},
		{"invalid UTF-8 in a get name", messaging.VerbGet, []byte("{\"resource\":\"pods\",\"name\":\"\xff\"}"), "name: invalid value: not valid UTF-8"},
		{"invalid UTF-8 in a selector", messaging.VerbList, []byte("{\"resource\":\"pods\",\"labelSelector\":\"a=\xff\"}"), "labelSelector: invalid value: not valid UTF-8"},
		{"1,001 labels", messaging.VerbApply, applyBody(podJSON("labels", labels(1001), "", "")), "metadata.labels: too many: more than 1000 keys, must have at most 1000"},
		{"280,000 labels (3.8 MB)", messaging.VerbApply, applyBody(podJSON("labels", labels(280000), "", "")), "metadata.labels: too many: more than 1000 keys, must have at most 1000"},
		{"1,001 nodeSelector terms", messaging.VerbApply, applyBody(podJSON("ns", "", "", `,"nodeSelector":{`+keys(1001)+`}`)), "spec.nodeSelector: too many: more than 1000 keys"},
		{"10,001 annotations", messaging.VerbApply, applyBody(podJSON("ann", `,"annotations":{`+keys(10001)+`}`, "", "")), "metadata.annotations: too many: more than 10000 keys, must have at most 10000"},
		{"ConfigMap with 280,000 keys (3.8 MB)", messaging.VerbApply, applyBody(configMapJSON(`"data":{` + keys(280000) + `}`)), "data: too many: more than 10000 keys, must have at most 10000"},
		{"Secret with 280,000 keys", messaging.VerbApply, applyBody(secretJSON(`"stringData":{` + keys(280000) + `}`)), "stringData: too many: more than 10000 keys"},
		{"ConfigMap of 10,000 keys and 3.7 MB", messaging.VerbApply,
			applyBody(configMapJSON(`"data":{` + repeatJSON(10000, func(i int) string { return fmt.Sprintf(`"k%d":"%s"`, i, strings.Repeat("v", 370)) }) + `}`)),
			"too long: data must have at most 1048576 bytes, has 3700000"},
		{"ConfigMap data and binaryData over 1 MiB together", messaging.VerbApply,
			applyBody(configMapJSON(`"data":{"a":"` + strings.Repeat("x", 512<<10) + `"},"binaryData":{"b":"` + base64.StdEncoding.EncodeToString(make([]byte, 512<<10+1)) + `"}`)),
			"too long: data must have at most 1048576 bytes, has 1048577"},
		{"Secret data and stringData over 1 MiB together", messaging.VerbApply,
			applyBody(secretJSON(`"stringData":{"a":"` + strings.Repeat("x", 512<<10) + `"},"data":{"b":"` + base64.StdEncoding.EncodeToString(make([]byte, 512<<10+1)) + `"}`)),
			"too long: data must have at most 1048576 bytes, has 1048577"},
		{"update of a ConfigMap to over 1 MiB", messaging.VerbUpdate,
			applyBody(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"normal","namespace":"default","resourceVersion":"1"},"data":{"a":"` + strings.Repeat("x", 1<<20+1) + `"}}`),
			"too long: data must have at most 1048576 bytes"},
		{"bad label key", messaging.VerbApply, applyBody(podJSON("labels", `,"labels":{"-bad":"x"}`, "", "")), `metadata.labels: invalid value "-bad"`},
		{"64-character label value", messaging.VerbApply, applyBody(podJSON("labels", `,"labels":{"a":"`+strings.Repeat("v", 64)+`"}`, "", "")), "must be 63 characters or less"},
		{"annotations over 256 KiB", messaging.VerbApply,
			applyBody(podJSON("ann", `,"annotations":{"a":"`+strings.Repeat("x", 256<<10)+`"}`, "", "")), "metadata.annotations: too long"},
		{"300-character name", messaging.VerbApply, applyBody(podJSON(strings.Repeat("a", 300), "", "", "")), "metadata.name: Too long: 300 bytes, must have at most 253"},
		{"1 MiB name", messaging.VerbApply, applyBody(podJSON(strings.Repeat("a", 1<<20), "", "", "")), "metadata.name: Too long: 1048576 bytes"},
		{"101 containers", messaging.VerbApply,
			applyBody(podJSON("many", "", "", `,"initContainers":[`+repeatJSON(100, func(i int) string { return fmt.Sprintf(`{"name":"c%d","image":"x"}`, i) })+`]`)),
			"spec.containers: too many: 101 items, must have at most 100"},
		{"100,000 containers", messaging.VerbApply,
			[]byte(`{"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"many"},"spec":{"containers":[` +
				repeatJSON(100000, func(int) string { return `{"name":"c","image":"x"}` }) + `]}}}`),
			"spec.containers: too many: more than 10000 items"},
		{"10,000 env", messaging.VerbApply,
			applyBody(podJSON("env", "", `,"env":[`+repeatJSON(10000, func(i int) string { return fmt.Sprintf(`{"name":"E%d"}`, i) })+`]`, "")),
			"spec.containers[0].env: too many: 10000 items, must have at most 1000"},
		{"5,000 ports", messaging.VerbApply,
			applyBody(podJSON("ports", "", `,"ports":[`+repeatJSON(5000, func(i int) string { return fmt.Sprintf(`{"containerPort":%d}`, i%65535+1) })+`]`, "")),
			"spec.containers[0].ports: too many: 5000 items, must have at most 256"},
		{"deployment template with 10,000 volumes", messaging.VerbApply,
			applyBody(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},` +
				`"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x"}],"volumes":[` +
				repeatJSON(10000, func(i int) string { return fmt.Sprintf(`{"name":"v%d","emptyDir":{}}`, i) }) + `]}}}}`),
			"spec.template.spec.volumes: too many: 10000 items, must have at most 256"},
		{"1,000 invalid env names", messaging.VerbApply,
			applyBody(podJSON("env", "", `,"env":[`+repeatJSON(1000, func(int) string { return `{"name":"="}` })+`]`, "")),
			"more errors"},
		{"event named with a wildcard", messaging.VerbApply,
			applyBody(`{"apiVersion":"v1","kind":"Event","metadata":{"name":"a b*"},"involvedObject":{"kind":"Pod","name":"p"}}`),
			`metadata.name: invalid value "a b*": may contain only alphanumerics, '-' and '.'`},
		{"huge integer", messaging.VerbApply, applyBody(podJSON("num", "", `,"ports":[{"containerPort":1e999999}]`, "")), "containerPort"},
		{"unknown field", messaging.VerbApply, applyBody(podJSON("unk", `,"bogus":1`, "", "")), `unknown field "bogus"`},
		{"wildcard get name", messaging.VerbGet, []byte(`{"resource":"pods","name":"*"}`), `name: Invalid value: "*"`},
		{"wildcard list namespace", messaging.VerbList, []byte(`{"resource":"pods","namespace":">"}`), `namespace: Invalid value: ">"`},
		{"key-breaking delete name", messaging.VerbDelete, []byte(`{"resource":"pods","name":"a b.>"}`), `name: Invalid value: "a b.>"`},
		{"1 MiB get name", messaging.VerbGet, []byte(`{"resource":"pods","name":"` + strings.Repeat("a", 1<<20) + `"}`), "name: Too long: 1048576 bytes, must have at most 253"},
		{"1 MiB resource", messaging.VerbList, []byte(`{"resource":"` + strings.Repeat("a", 1<<20) + `"}`), "resource: Too long"},
		{"1 MiB selector", messaging.VerbList, []byte(`{"resource":"pods","labelSelector":"` + strings.Repeat("a", 1<<20) + `"}`), "labelSelector: Too long"},
		{"status of a wildcard name", messaging.VerbUpdateStatus, applyBody(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a*"}}`), `metadata.name: Invalid value: "a*"`},
		{"update with 1,001 labels", messaging.VerbUpdate,
			applyBody(podJSON("labels", `,"resourceVersion":"1"`+labels(1001), "", "")), "metadata.labels: too many"},
		{"applyBatch of 1,390,000 empty objects (4 MB)", client.VerbApplyBatch,
			[]byte(`{"objects":[` + strings.Repeat(`{},`, 1390000) + `{}]}`), "decode request: objects: too many: more than 10000 items"},
		{"applyBatch of 101 objects", client.VerbApplyBatch,
			[]byte(`{"objects":[` + strings.Repeat(`{},`, 100) + `{}]}`), "objects: Too many: 101, must have at most 100"},
		{"a request of 2,000,000 numbers", messaging.VerbGet, []byte(`[` + strings.Repeat(`1,`, 2000000) + `1]`), "decode request: a list holds more than 10000 items"},
		{"request over the size limit", messaging.VerbApply, applyBody(`"` + strings.Repeat("x", DefaultMaxRequestBytes) + `"`), "request too large"},
		{"not JSON", messaging.VerbApply, []byte("\x00\x01\x02"), "decode request"},
		{"two requests in one body", messaging.VerbGet, []byte(`{"resource":"pods","name":"a"}{"resource":"pods","name":"b"}`), "unexpected data after the request"},
	}
}

// lastRevision is the objects bucket's revision.
func (e *env) lastRevision(t *testing.T) uint64 {
	t.Helper()
	_, rev, err := e.st.List(ctxT(t), "namespaces", "", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestHostileRequests sends every hostile request through NATS: each gets
// Invalid naming what is wrong, nothing is stored, a normal apply still
// works afterwards, and the server holds no goroutine more at the end.
func TestHostileRequests(t *testing.T) {
	e := newEnv(t, Options{})
	// ~40 requests, some of them megabytes: one bound for all of them,
	// generous for a loaded machine (not a timing assertion).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	normal := func(i int) {
		t.Helper()
		if res, _, err := e.c.Apply(ctx, configMap("default", "normal", fmt.Sprint(i))); err != nil || res != client.ResultConfigured && res != client.ResultCreated {
			t.Fatalf("normal apply after a hostile request: %v %v", res, err)
		}
	}
	normal(0)
	// Let the server settle before counting its goroutines: its RBAC
	// caches start watching in the background.
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.users.az.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	for i, tc := range hostileCases() {
		rev := e.lastRevision(t)
		start := time.Now()
		resp := e.call(t, tc.verb, tc.body)
		took := time.Since(start)
		if resp.Error == nil {
			t.Fatalf("%s: accepted: %s", tc.name, resp.Result)
		}
		if resp.Error.Code != client.CodeInvalid || !strings.Contains(resp.Error.Message, tc.want) {
			t.Fatalf("%s: error %s %q, want Invalid containing %q", tc.name, resp.Error.Code, short(resp.Error.Message), tc.want)
		}
		if len(resp.Error.Message) > 16<<10 {
			t.Errorf("%s: error message of %d bytes", tc.name, len(resp.Error.Message))
		}
		if got := e.lastRevision(t); got != rev {
			t.Fatalf("%s: the bucket changed (revision %d -> %d)", tc.name, rev, got)
		}
		t.Logf("%-40s %7d bytes %8v  %s", tc.name, len(tc.body), took.Round(time.Microsecond), short(resp.Error.Message))
		normal(i + 1)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n := runtime.NumGoroutine(); n > base+2; n = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines, %d before the hostile requests:\n%s", n, base, b.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the count
	}
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// eventually polls f until it returns nil or d has passed.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCheckDepth(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{}`, true},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), true},
		{strings.Repeat("[", 101), false},
		{`{"a":"` + strings.Repeat("[", 500) + `"}`, true},
		{`{"a":"\"` + strings.Repeat("{", 500) + `"}`, true},
		{`{"a":"\\"` + strings.Repeat("{", 500) + `}`, false},
		{`{"a":[` + strings.Repeat(`1,`, 9999) + `1]}`, true},
		{`{"a":[` + strings.Repeat(`1,`, 10000) + `1]}`, false},
		{`{"a":["` + strings.Repeat(`,`, 20000) + `"]}`, true},
		{`{"a":[` + strings.Repeat(`{"b":1,"c":2},`, 9999) + `{}]}`, true},
		{`{"a":[` + strings.Repeat(`[1,2],`, 9999) + `[1,2]],"b":[` + strings.Repeat(`{},`, 10000) + `{}]}`, false},
	} {
		if err := checkShape([]byte(tc.in), 100, 10000); (err == nil) != tc.ok {
			t.Errorf("checkShape(%.30s...) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

// TestHostileRequestsDirect runs the hostile requests through the handlers
// without NATS (so no payload limit hides a decoder bug) with a short
// deadline: every one is refused as Invalid.
func TestHostileRequestsDirect(t *testing.T) {
	e := newEnv(t, Options{})
	handlers := map[string]handler{
		messaging.VerbApply: e.srv.apply, messaging.VerbGet: e.srv.get, messaging.VerbList: e.srv.list,
		messaging.VerbDelete: e.srv.delete, messaging.VerbUpdate: e.srv.update, messaging.VerbUpdateStatus: e.srv.updateStatus,
		client.VerbApplyBatch: e.srv.applyBatch,
	}
	for _, tc := range hostileCases() {
		if tc.want == "request too large" {
			continue // checked by serve, before the handler
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := handlers[tc.verb](ctx, tc.body)
		cancel()
		if err == nil {
			raw, _ := json.Marshal(res)
			t.Fatalf("%s: accepted: %s", tc.name, raw)
		}
		if client.CodeOf(err) != client.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want Invalid containing %q", tc.name, short(err.Error()), tc.want)
		}
	}
}

// TestHugeMapsAtOnce sends 8 applies of 280,000 labels and 8 of a
// ConfigMap of 280,000 keys (3.8 MB each) at once: each is refused as
// Invalid after reading the first keys, with little memory (before the
// limits were checked while decoding: 47 s and a peak heap of 1.7 GiB for
// the labels, "context deadline exceeded" for the ConfigMaps).
func TestHugeMapsAtOnce(t *testing.T) {
	// Under the race detector on a loaded machine, 16 bodies of 3.8 MB
	// can take longer than the default 10 s to go through: this test is
	// about the errors and the memory, not the server's deadline.
	e := newEnv(t, Options{RequestTimeout: time.Minute})
	keys := repeatJSON(280000, func(i int) string { return fmt.Sprintf(`"k%d":"v"`, i) })
	bodies := []struct {
		body []byte
		want string
	}{
		{applyBody(podJSON("labels", `,"labels":{`+keys+`}`, "", "")), "metadata.labels: too many: more than 1000 keys, must have at most 1000"},
		{applyBody(configMapJSON(`"data":{` + keys + `}`)), "data: too many: more than 10000 keys, must have at most 10000"},
	}
	rev := e.lastRevision(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	errs := make(chan error, 16)
	for i := range 16 {
		b := bodies[i%2]
		go func() {
			msg, err := e.nc.Request(messaging.APISubject(messaging.VerbApply), b.body, time.Minute)
			if err != nil {
				errs <- err
				return
			}
			var resp client.Response
			if err := json.Unmarshal(msg.Data, &resp); err != nil {
				errs <- fmt.Errorf("reply %.200s: %v", msg.Data, err)
				return
			}
			if resp.Error == nil || resp.Error.Code != client.CodeInvalid || !strings.Contains(resp.Error.Message, b.want) {
				errs <- fmt.Errorf("reply %.300s, want Invalid containing %q", msg.Data, b.want)
				return
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("16 requests of 3.8 MB refused in %v, %d MiB allocated (test and server)", took, alloc>>20)
	// 16 bodies of 3.8 MB are copied a few times on their way (NATS, the
	// request decoder); decoding them whole took over 300 MiB each.
	if alloc > 1<<30 {
		t.Fatalf("%d MiB allocated for 16 requests, want under 1 GiB", alloc>>20)
	}
	if got := e.lastRevision(t); got != rev {
		t.Fatalf("the bucket changed (revision %d -> %d)", rev, got)
	}
}

// TestConfigDataAtTheLimit checks the positive side of the 1 MiB limit of
// a ConfigMap's and a Secret's data: exactly 1 MiB is stored and read back.
func TestConfigDataAtTheLimit(t *testing.T) {
	e := newEnv(t, Options{})
	half := 512 << 10
	for _, tc := range []struct {
		resource, body string
	}{
		{"configmaps", configMapJSON(`"data":{"a":"` + strings.Repeat("x", half) + `"},"binaryData":{"b":"` + base64.StdEncoding.EncodeToString(make([]byte, half)) + `"}`)},
		{"secrets", secretJSON(`"stringData":{"a":"` + strings.Repeat("x", half) + `"},"data":{"b":"` + base64.StdEncoding.EncodeToString(make([]byte, half)) + `"}`)},
	} {
		resp := e.call(t, messaging.VerbApply, applyBody(tc.body))
		if resp.Error != nil {
			t.Fatalf("%s of 1 MiB: %s %s", tc.resource, resp.Error.Code, short(resp.Error.Message))
		}
		obj, err := e.st.Get(ctxT(t), tc.resource, "default", "big")
		if err != nil {
			t.Fatalf("%s of 1 MiB not stored: %v", tc.resource, err)
		}
		size := 0
		switch o := obj.(type) {
		case *manifests.ConfigMap:
			size = len(o.Data["a"]) + len(o.BinaryData["b"])
		case *manifests.Secret:
			size = len(o.StringData["a"]) + len(o.Data["a"]) + len(o.Data["b"])
		}
		if size != 1<<20 {
			t.Fatalf("%s stored with %d bytes of data, want %d", tc.resource, size, 1<<20)
		}
	}
}

// TestNodeRefusedBeforeFullDecode checks that a node's write of an object
// it may not write is Forbidden from its kind and name alone (refuseEarly):
// the same 3.7 MB body is Invalid for an admin, whose request is decoded
// and validated whole. A write it may make is still decoded whole.
func TestNodeRefusedBeforeFullDecode(t *testing.T) {
	e := newEnv(t, Options{})
	bigData := `"data":{` + repeatJSON(10000, func(i int) string { return fmt.Sprintf(`"k%d":"%s"`, i, strings.Repeat("v", 370)) }) + `}`
	labels := `,"labels":{` + repeatJSON(280000, func(i int) string { return fmt.Sprintf(`"k%d":"v"`, i) }) + `}`
	asNode := func(verb string, body []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var h handler
		for _, v := range e.srv.objectVerbs() {
			if v.verb == verb {
				h = v.h
			}
		}
		_, err := e.srv.asNode(verb, h)(withSubject(ctx, messaging.NodeAPISubject("n1", verb)), body)
		return err
	}
	for _, tc := range []struct {
		name, verb string
		body       []byte
		code       string
		want       string
	}{
		{"a 3.7 MB ConfigMap", messaging.VerbApply, applyBody(configMapJSON(bigData)), client.CodeForbidden,
			`node "n1" may not apply configmaps "default/big": nodes may not write this kind`},
		{"another node with 280,000 labels", messaging.VerbApply, applyBody(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"n2"` + labels + `}}`), client.CodeForbidden,
			`node "n1" may not apply nodes "n2": it is another node`},
		{"a pod (not its status)", messaging.VerbUpdate, applyBody(podJSON("p", labels, "", "")), client.CodeForbidden,
			"nodes may only update the status of pods"},
		{"an event update", messaging.VerbUpdate, applyBody(`{"apiVersion":"v1","kind":"Event","metadata":{"name":"e"},"involvedObject":{"kind":"Node","name":"n1"}}`), client.CodeForbidden,
			"nodes may not write this kind"},
		{"its own Node with 280,000 labels", messaging.VerbApply, applyBody(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"` + labels + `}}`), client.CodeInvalid,
			"metadata.labels: too many: more than 1000 keys, must have at most 1000"},
		{"its own Node with a 1 MiB name twin", messaging.VerbApply, applyBody(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"` + strings.Repeat("a", 1<<20) + `"}}`), client.CodeInvalid,
			"metadata.name: Too long: 1048576 bytes, must have at most 253"},
		{"a duplicate kind", messaging.VerbApply, applyBody(`{"apiVersion":"v1","kind":"ConfigMap","kind":"Node","metadata":{"name":"n1"}}`), client.CodeInvalid,
			`duplicate field "kind"`},
	} {
		rev := e.lastRevision(t)
		start := time.Now()
		err := asNode(tc.verb, tc.body)
		if err == nil || client.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want %s containing %q", tc.name, err, tc.code, tc.want)
		}
		t.Logf("%-40s %7d bytes %8v  %s", tc.name, len(tc.body), time.Since(start).Round(time.Microsecond), short(err.Error()))
		if got := e.lastRevision(t); got != rev {
			t.Fatalf("%s: the bucket changed (revision %d -> %d)", tc.name, rev, got)
		}
	}
	// The admin's apply of the same ConfigMap is decoded and validated.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.srv.apply(ctx, applyBody(configMapJSON(bigData))); client.CodeOf(err) != client.CodeInvalid || !strings.Contains(err.Error(), "must have at most 1048576 bytes") {
		t.Fatalf("admin apply of the 3.7 MB ConfigMap: %v, want Invalid too long", err)
	}
}
