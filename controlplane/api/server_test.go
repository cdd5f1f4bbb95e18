package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go"
)

type env struct {
	st  *store.Store
	nc  *nats.Conn
	c   *client.Client
	srv *Server
}

// newEnv starts an in-process NATS server, the store and the API server,
// and returns a client of it.
func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nenv := natstest.Start(t, "api-test")
	nc, b := nenv.Conn, nenv.Buckets
	st := store.New(b.Objects)
	srv := New(st, nc, opts)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	return &env{st: st, nc: nc, c: client.New(nc), srv: srv}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// call sends a raw request body to verb and returns the decoded response.
func (e *env) call(t *testing.T, verb string, body []byte) client.Response {
	t.Helper()
	msg, err := e.nc.Request(messaging.APISubject(verb), body, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var resp client.Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		t.Fatalf("reply %s: %v", msg.Data, err)
	}
	return resp
}

func wantCode(t *testing.T, err error, code, msg string) {
	t.Helper()
	if client.CodeOf(err) != code {
		t.Fatalf("error %v (code %q), want code %s", err, client.CodeOf(err), code)
	}
	if msg != "" && err.Error() != msg {
		t.Fatalf("error message\n got %q\nwant %q", err.Error(), msg)
	}
}

func pod(name, image string) *manifests.Pod {
	p := &manifests.Pod{Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "main", Image: image}}}}
	p.Name = name
	p.Labels = map[string]string{"app": name}
	return p
}

func configMap(ns, name, v string) *manifests.ConfigMap {
	cm := &manifests.ConfigMap{Data: map[string]string{"v": v}}
	cm.Name, cm.Namespace = name, ns
	return cm
}

func TestStartCreatesSystemNamespaces(t *testing.T) {
	e := newEnv(t, Options{})
	for _, ns := range SystemNamespaces {
		obj, err := e.c.Get(ctxT(t), "namespaces", "", ns)
		if err != nil {
			t.Fatalf("namespace %s: %v", ns, err)
		}
		if obj.(*manifests.Namespace).Status.Phase != "Active" {
			t.Fatalf("namespace %s: %+v", ns, obj)
		}
	}
	// Starting a second server over the same bucket finds them.
	srv := New(e.st, e.nc, Options{})
	ctx := ctxT(t)
	if err := srv.ensureNamespaces(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRequestChecks(t *testing.T) {
	e := newEnv(t, Options{MaxRequestBytes: 1024})
	resp := e.call(t, messaging.VerbGet, []byte(`{"resource":"pods","name":"x","bogus":1}`))
	if resp.Error == nil || resp.Error.Code != client.CodeInvalid {
		t.Fatalf("unknown request field: %+v", resp)
	}
	resp = e.call(t, messaging.VerbGet, []byte(`not json`))
	if resp.Error == nil || resp.Error.Code != client.CodeInvalid {
		t.Fatalf("bad json: %+v", resp)
	}
	big := make([]byte, 2048)
	for i := range big {
		big[i] = ' '
	}
	resp = e.call(t, messaging.VerbApply, big)
	if resp.Error == nil || resp.Error.Code != client.CodeInvalid || resp.Error.Message[:17] != "request too large" {
		t.Fatalf("large request: %+v", resp)
	}
}

func TestServiceInfo(t *testing.T) {
	e := newEnv(t, Options{})
	msg, err := e.nc.Request("$SRV.INFO."+messaging.APIServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Name      string `json:"name"`
		Version   string `json:"version"`
		Endpoints []struct {
			Subject string `json:"subject"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != messaging.APIServiceName || info.Version != messaging.APIVersion || len(info.Endpoints) != 8 {
		t.Fatalf("service info %+v", info)
	}
}

func TestStopIsIdempotent(t *testing.T) {
	e := newEnv(t, Options{})
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.Get(ctxT(t), "namespaces", "", "default")
	wantCode(t, err, client.CodeUnavailable, "")
}

func TestStopWhileBusy(t *testing.T) {
	e := newEnv(t, Options{Concurrency: 4})
	ctx := ctxT(t)
	const workers = 16
	errs := make(chan error, workers*20)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 20 {
				_, _, err := e.c.Apply(ctx, configMap("default", "busy", "1"))
				errs <- err
			}
		}()
	}
	if _, err := e.c.Get(ctx, "namespaces", "", "default"); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for range workers {
		<-done
	}
	close(errs)
	for err := range errs {
		if err != nil && client.CodeOf(err) != client.CodeUnavailable {
			t.Fatalf("request during stop: %v", err)
		}
	}
}

func TestTooLargeRequestOverNATS(t *testing.T) {
	e := newEnv(t, Options{})
	cm := configMap("default", "big", "")
	cm.Data["v"] = strings.Repeat("x", DefaultMaxRequestBytes+1)
	_, _, err := e.c.Apply(ctxT(t), cm)
	wantCode(t, err, client.CodeInvalid, "")
	if !strings.HasPrefix(err.Error(), "request too large") {
		t.Fatalf("message %q", err)
	}
}
