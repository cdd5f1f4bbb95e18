package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// The fuzz tests feed request bodies straight to each verb's handler, over
// a real store. `go test` runs the seeds; `go test -fuzz FuzzApplyRequest
// ./controlplane/api/` explores. Every body must get a result or an API
// error with a code other than Internal, and an Invalid request must leave
// the bucket untouched.

var fuzzPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"p"}},"spec":{"containers":[{"name":"main","image":"hello"}]}}`

// commonSeeds are bodies every decoder must refuse cleanly.
var commonSeeds = []string{
	``, `null`, `{}`, `[]`, `"x"`, `{"object":null}`, `{"object":{}}`, `{"object":[]}`,
	strings.Repeat("[", 200), `{"object":` + strings.Repeat(`{"a":`, 90) + `1` + strings.Repeat("}", 90) + `}`,
	"{\"resource\":\"pods\",\"name\":\"\xff\"}", `{"resource":"pods","name":"*"}`, `{"resource":"pods","namespace":">"}`,
	`{"resource":"pods","name":"a","bogus":1}`, `{"resource":"pods","name":"a"}{}`, "\x00",
}

func fuzzHandler(f *testing.F, h func(s *Server) handler, seeds ...string) {
	e := newEnv(f, Options{})
	ctx := context.Background()
	if _, _, err := e.c.Apply(ctxT(f), configMap("default", "seed", "1")); err != nil {
		f.Fatal(err)
	}
	for _, s := range append(seeds, commonSeeds...) {
		f.Add([]byte(s))
	}
	run := h(e.srv)
	f.Fuzz(func(t *testing.T, body []byte) {
		_, before, err := e.st.List(ctx, "namespaces", "", manifests.Selector{})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = run(rctx, body)
		if err == nil {
			return
		}
		se := statusError(err)
		if se.Code == client.CodeInternal || se.Message == "" {
			t.Fatalf("body %q: error %s %q", body, se.Code, se.Message)
		}
		if se.Code != client.CodeInvalid {
			return
		}
		_, after, err := e.st.List(ctx, "namespaces", "", manifests.Selector{})
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("body %q: Invalid (%s) but the bucket changed: revision %d -> %d", body, se.Message, before, after)
		}
	})
}

func FuzzApplyRequest(f *testing.F) {
	fuzzHandler(f, func(s *Server) handler { return s.apply },
		`{"object":`+fuzzPod+`}`,
		`{"object":`+fuzzPod+`,"dryRun":true}`,
		`{"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"default"},"data":{"a":"b"}}}`,
		`{"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"missing"}}}`,
		`{"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}}`,
		`{"object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"e*"}}}`,
		`{"object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"Bad"}}}`,
		"{\"object\":{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\",\"labels\":{\"a\":\"\xff\"}}}}",
	)
}

func FuzzUpdateRequest(f *testing.F) {
	fuzzHandler(f, func(s *Server) handler { return s.update },
		`{"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"seed","namespace":"default","resourceVersion":"1"},"data":{"v":"2"}}}`,
		`{"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"seed","namespace":"default","resourceVersion":"x"}}}`,
		`{"object":`+fuzzPod+`}`,
	)
}

func FuzzStatusRequest(f *testing.F) {
	fuzzHandler(f, func(s *Server) handler { return s.updateStatus },
		`{"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"status":{"phase":"Running"}}}`,
		`{"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"seed","namespace":"default"}}}`,
		`{"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p."},"status":{"phase":"Bogus"}}}`,
	)
}

func FuzzGetRequest(f *testing.F) {
	fuzzHandler(f, func(s *Server) handler { return s.get },
		`{"resource":"configmaps","namespace":"default","name":"seed"}`,
		`{"resource":"cm","name":"seed"}`,
		`{"resource":"nodes","namespace":"x","name":"n1"}`,
		`{"resource":"widgets","name":"x"}`,
	)
}

func FuzzListRequest(f *testing.F) {
	fuzzHandler(f, func(s *Server) handler { return s.list },
		`{"resource":"configmaps"}`,
		`{"resource":"pods","namespace":"default","labelSelector":"app in (a,b),!x"}`,
		`{"resource":"pods","labelSelector":"a=="}`,
		`{"resource":"ns"}`,
	)
}

func FuzzDeleteRequest(f *testing.F) {
	fuzzHandler(f, func(s *Server) handler { return s.delete },
		`{"resource":"configmaps","namespace":"default","name":"absent"}`,
		`{"resource":"configmaps","name":"seed","resourceVersion":"999999"}`,
		`{"resource":"configmaps","name":"seed","propagationPolicy":"Sideways"}`,
		`{"resource":"namespaces","name":"default"}`,
		`{"resource":"pods","name":"p","resourceVersion":"-1"}`,
	)
}
