package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
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
	if _, _, err := e.c.Apply(ctxT(f), configMap("default", "seed", "1")); err != nil {
		f.Fatal(err)
	}
	revision := func(t *testing.T) uint64 {
		_, rev, err := e.st.List(context.Background(), "namespaces", "", manifests.Selector{})
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	fuzzRun(f, revision, func(_ *testing.T, body []byte) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return h(e.srv)(ctx, body)
	}, nil, seeds...)
}

// fuzzRun fuzzes run with the seeds and commonSeeds: every body must get
// a result or an API error other than Internal with a message, and an
// Invalid one must leave revision unchanged. check, when not nil, checks
// a result.
func fuzzRun(f *testing.F, revision func(t *testing.T) uint64, run func(t *testing.T, body []byte) (any, error), check func(t *testing.T, body []byte, res any), seeds ...string) {
	for _, s := range append(seeds, commonSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := revision(t)
		res, err := run(t, body)
		if err == nil {
			if check != nil {
				check(t, body, res)
			}
			return
		}
		checkError(t, body, err)
		if statusError(err).Code != client.CodeInvalid {
			return
		}
		if after := revision(t); after != before {
			t.Fatalf("body %q: Invalid (%s) but the buckets changed: revision %d -> %d", body, statusError(err).Message, before, after)
		}
	})
}

// checkError fails t when err is Internal or has no message.
func checkError(t *testing.T, body []byte, err error) {
	t.Helper()
	se := statusError(err)
	if se.Code == client.CodeInternal || se.Message == "" {
		t.Fatalf("body %q: error %s %q", body, se.Code, se.Message)
	}
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

// fuzzAuthEnv is an API server in operator mode (join tokens, node and
// user credentials) on an embedded NATS server, for the fuzz tests of the
// verbs that need the authority.
type fuzzAuthEnv struct{ *authEnv }

func newFuzzAuthEnv(tb testing.TB) *fuzzAuthEnv { return &fuzzAuthEnv{newAuthEnv(tb)} }

// revision sums the last sequences of the buckets a request may write:
// objects, join tokens, node and user keys, usage.
func (e *fuzzAuthEnv) revision(t *testing.T) uint64 {
	t.Helper()
	var sum uint64
	for _, kv := range []jetstream.KeyValue{e.b.Objects, e.b.JoinTokens, e.b.NodeKeys, e.b.Usage} {
		st, err := kv.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sum += st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	}
	return sum
}

// call runs h on body as if it came on subject (none: an admin's).
func (e *fuzzAuthEnv) call(h handler, subject string, body []byte) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if subject != "" {
		ctx = withSubject(ctx, subject)
	}
	return h(ctx, body)
}

func (e *fuzzAuthEnv) fuzz(f *testing.F, h handler, subject string, check func(t *testing.T, body []byte, res any), seeds ...string) {
	fuzzRun(f, e.revision, func(_ *testing.T, body []byte) (any, error) { return e.call(h, subject, body) }, check, seeds...)
}

// fuzzToken creates a join token for the seeds of FuzzJoinRequest.
func (e *fuzzAuthEnv) fuzzToken(f *testing.F, node string) client.TokenCreateResult {
	res, err := e.call(e.srv.createToken, "", []byte(`{"ttl":"1h","node":"`+node+`"}`))
	if err != nil {
		f.Fatal(err)
	}
	return res.(client.TokenCreateResult)
}

func FuzzApplyBatchRequest(f *testing.F) {
	e := newFuzzAuthEnv(f)
	cm := func(name string) string {
		return `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"` + name + `","namespace":"default"},"data":{"a":"b"}}`
	}
	e.fuzz(f, e.srv.applyBatch, "", func(t *testing.T, body []byte, res any) {
		for i, it := range res.(client.ApplyBatchResult).Items {
			if it.Error != nil {
				checkError(t, body, it.Error)
			} else if it.Result == "" {
				t.Fatalf("body %q: item %d has neither a result nor an error", body, i)
			}
		}
	},
		`{"objects":[`+cm("a")+`,`+fuzzPod+`]}`,
		`{"objects":[`+cm("a")+`,`+cm("a")+`],"dryRun":true}`,
		`{"objects":[null,{},[],"x",1]}`,
		`{"objects":[]}`,
		`{"objects":[`+strings.Repeat(`{},`, 100)+`{}]}`,
		`{"objects":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n1"}},`+cm("b")+`]}`,
		`{"objects":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"g-","namespace":"missing"}}]}`,
	)
}

func FuzzJoinRequest(f *testing.F) {
	e := newFuzzAuthEnv(f)
	tok := e.fuzzToken(f, "n1")
	kp, err := nkeys.CreateUser()
	if err != nil {
		f.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	jt, err := auth.ParseJoinToken(tok.Token)
	if err != nil {
		f.Fatal(err)
	}
	secret := jt.Secret
	join := func(id, secret, node, pub string) string {
		raw, _ := json.Marshal(client.JoinRequest{TokenID: id, Secret: secret, Node: node, PublicKey: pub})
		return string(raw)
	}
	e.fuzz(f, e.srv.join, "", nil,
		join(tok.ID, secret, "n1", pub),
		join(tok.ID, secret, "n2", pub),
		join(tok.ID, "wrong", "n1", pub),
		join("*", secret, "n1", pub),
		join("a b.>", "x", "n1", pub),
		join(tok.ID, secret, "N1!", pub),
		join(tok.ID, secret, "n1", "not-a-key"),
		join("", "", "", ""),
		`{"tokenId":1}`,
	)
}

func FuzzTokenCreateRequest(f *testing.F) {
	e := newFuzzAuthEnv(f)
	e.fuzz(f, e.srv.createToken, "", nil,
		`{}`, `{"ttl":"1h"}`, `{"ttl":"-1h"}`, `{"ttl":"0s"}`, `{"ttl":"100000h"}`, `{"ttl":"1y"}`,
		`{"node":"n1"}`, `{"node":"*"}`, `{"node":"a b"}`, `{"node":"`+strings.Repeat("a", 300)+`"}`,
	)
}

func FuzzRevokeRequest(f *testing.F) {
	e := newFuzzAuthEnv(f)
	tok := e.fuzzToken(f, "n1")
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	jt, err := auth.ParseJoinToken(tok.Token)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := json.Marshal(client.JoinRequest{TokenID: tok.ID, Secret: jt.Secret, Node: "n1", PublicKey: pub})
	if _, err := e.call(e.srv.join, "", raw); err != nil {
		f.Fatal(err)
	}
	e.fuzz(f, e.srv.revokeNode, "", nil,
		`{"node":"n1"}`, `{"node":"n2"}`, `{"node":""}`, `{"node":"*"}`, `{"node":">"}`, `{"node":"a b"}`,
		`{"node":"a.b"}`, `{"node":"`+strings.Repeat("a", 1000)+`"}`,
	)
}

func FuzzUserCreateRequest(f *testing.F) {
	e := newFuzzAuthEnv(f)
	e.fuzz(f, e.srv.createUser, "", nil,
		`{"name":"alice"}`, `{"name":"bob","groups":["dev","dev","ops"],"ttl":"720h"}`,
		`{"name":"carol","ttl":"-1h"}`, `{"name":"*"}`, `{"name":"a b"}`, `{"name":"alice","groups":["system:masters"]}`,
		`{"name":"x","groups":[`+strings.Repeat(`"g",`, 200)+`"g"]}`, `{"name":"x","ttl":"99999999h"}`,
	)
}

func FuzzUserRevokeRequest(f *testing.F) {
	e := newFuzzAuthEnv(f)
	if _, err := e.call(e.srv.createUser, "", []byte(`{"name":"alice"}`)); err != nil {
		f.Fatal(err)
	}
	e.fuzz(f, e.srv.revokeUser, "", nil,
		`{"name":"alice"}`, `{"name":"bob"}`, `{"name":""}`, `{"name":"*"}`, `{"name":">"}`, `{"name":"a.b"}`,
	)
}

func FuzzAccessReviewRequest(f *testing.F) {
	e := newFuzzAuthEnv(f)
	e.fuzz(f, e.srv.accessReview, "", nil,
		`{"verb":"get","resource":"pods","namespace":"default"}`,
		`{"user":"alice","groups":["dev"],"verb":"create","resource":"deployments","namespace":"default","name":"d"}`,
		`{"verb":"*","resource":"*"}`,
		`{"list":true,"namespace":"default"}`,
		`{"verb":"get","resource":"pods","subresource":"log","name":"a b"}`,
	)
}

func FuzzUsageReport(f *testing.F) {
	e := newFuzzAuthEnv(f)
	report := `{"node":{"metadata":{"name":"n1"},"window":"30s","usage":{"cpu":"100m","memory":"64Mi"}},` +
		`"pods":[{"metadata":{"name":"p","namespace":"default","uid":"u1"},"window":"30s","containers":[{"name":"c","usage":{"cpu":"1m","memory":"1Mi"}}]}]}`
	e.fuzz(f, e.srv.asNode(messaging.VerbUsage, e.srv.reportUsage), messaging.NodeAPISubject("n1", messaging.VerbUsage), nil,
		report,
		strings.Replace(report, `"n1"`, `"n2"`, 1),
		strings.Replace(report, `"100m"`, `"-1"`, 1),
		strings.Replace(report, `"30s"`, `"2h"`, 1),
		`{"node":{"metadata":{"name":"n1"}},"pods":[`+strings.Repeat(`{},`, 1000)+`{}]}`,
		`{"node":{"metadata":{"name":"n1"},"usage":{"gpu":"1"}}}`,
	)
}

func FuzzTopRequest(f *testing.F) {
	e := newFuzzAuthEnv(f)
	e.fuzz(f, e.srv.top, "", nil,
		`{"resource":"nodes"}`, `{"resource":"pods","namespace":"default","labelSelector":"app=a"}`,
		`{"resource":"po","name":"p"}`, `{"resource":"services"}`, `{"resource":"pods","labelSelector":"a in ("}`,
		`{"resource":"nodes","name":"*"}`,
	)
}

// FuzzNodeAuthorization sends each object verb's body on node n1's
// subject (the first byte of the input chooses the verb): besides the
// checks of every fuzz test, a write that succeeds must be one n1 may make
// (its own Node, an Event, the status of its pod, a PersistentVolume), and
// a Forbidden one must leave the buckets as they were.
func FuzzNodeAuthorization(f *testing.F) {
	e := newFuzzAuthEnv(f)
	ctx := context.Background()
	mine := pod("mine", "img")
	mine.Spec.NodeName = "n1"
	mine.Spec.Volumes = []manifests.Volume{{Name: "c", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "cm"}}}}
	theirs := pod("theirs", "img")
	theirs.Spec.NodeName = "n2"
	for _, o := range []manifests.Object{mine, theirs, configMap("default", "cm", "1"), configMap("default", "other", "1")} {
		manifests.Default(o)
		if _, err := e.st.Create(ctx, o); err != nil {
			f.Fatal(err)
		}
	}
	verbs := e.srv.objectVerbs()
	seeds := []struct {
		verb int
		body string
	}{
		{0, `{"resource":"pods","namespace":"default","name":"mine"}`},
		{0, `{"resource":"pods","namespace":"default","name":"theirs"}`},
		{0, `{"resource":"configmaps","namespace":"default","name":"cm"}`},
		{0, `{"resource":"configmaps","namespace":"default","name":"other"}`},
		{0, `{"resource":"secrets","name":"*"}`},
		{1, `{"resource":"services"}`},
		{1, `{"resource":"secrets"}`},
		{2, `{"object":{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}}`},
		{2, `{"object":{"apiVersion":"v1","kind":"Node","metadata":{"name":"n2"}}}`},
		{2, `{"object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"e1","namespace":"default"},"involvedObject":{"kind":"Pod","name":"mine","namespace":"default"}}}`},
		{2, `{"object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"e2","namespace":"default"},"involvedObject":{"kind":"Pod","name":"theirs","namespace":"default"}}}`},
		{2, `{"object":` + fuzzPod + `}`},
		{2, `{"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"default"}}}`},
		{2, `{"object":{"kind":"Node","apiVersion":"v1","metadata":{"name":"n2"},"kind":"Node"}}`},
		{3, `{"object":{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","resourceVersion":"1"}}}`},
		{4, `{"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"mine","namespace":"default"},"status":{"phase":"Running"}}}`},
		{4, `{"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"theirs","namespace":"default"},"status":{"phase":"Running"}}}`},
		{5, `{"resource":"pods","namespace":"default","name":"mine"}`},
	}
	for _, s := range seeds {
		f.Add(byte(s.verb), []byte(s.body))
	}
	for _, s := range commonSeeds {
		f.Add(byte(2), []byte(s))
	}
	f.Fuzz(func(t *testing.T, verb byte, body []byte) {
		v := verbs[int(verb)%len(verbs)]
		before := e.revision(t)
		_, err := e.call(e.srv.asNode(v.verb, v.h), messaging.NodeAPISubject("n1", v.verb), body)
		if err != nil {
			checkError(t, body, err)
			if code := statusError(err).Code; code == client.CodeInvalid || code == client.CodeForbidden {
				if after := e.revision(t); after != before {
					t.Fatalf("%s %q: %s (%s) but the buckets changed", v.verb, body, code, statusError(err).Message)
				}
			}
			return
		}
		switch v.verb {
		case messaging.VerbApply, messaging.VerbUpdate, messaging.VerbUpdateStatus:
		default:
			return
		}
		var req client.ApplyRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("%s %q accepted, but it does not decode: %v", v.verb, body, err)
		}
		obj, err := manifests.DecodeJSONStrict(req.Object)
		if err != nil {
			t.Fatalf("%s %q accepted, but its object does not decode: %v", v.verb, body, err)
		}
		switch o := obj.(type) {
		case *manifests.Node:
			if o.Name == "n1" {
				return
			}
		case *manifests.Event, *manifests.PersistentVolume:
			return
		case *manifests.Pod:
			if v.verb == messaging.VerbUpdateStatus && o.Name == "mine" && namespaceFor(manifests.Kind{Namespaced: true}, o.Namespace) == "default" {
				return
			}
		}
		t.Fatalf("node n1 was let %s %T %q: %q", v.verb, obj, obj.GetObjectMeta().Name, body)
	})
}
