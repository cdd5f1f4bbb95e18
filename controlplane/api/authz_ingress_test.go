package api

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

func azIngress(ns, name string, secrets ...string) *manifests.Ingress {
	ing := &manifests.Ingress{}
	ing.Name, ing.Namespace = name, ns
	ing.Spec.DefaultBackend = &manifests.IngressBackend{Service: &manifests.IngressServiceBackend{Name: "web", Port: manifests.ServiceBackendPort{Number: 80}}}
	for _, s := range secrets {
		ing.Spec.TLS = append(ing.Spec.TLS, manifests.IngressTLS{Hosts: []string{"a.example.com"}, SecretName: s})
	}
	return ing
}

// TestNodeReadsIngressesAndTheirTLSSecrets: every node may get, list and
// watch Ingresses (with its own credentials, through its node-scoped
// subjects) and get the Secrets an Ingress of the same namespace names in
// spec.tls; no other Secret.
func TestNodeReadsIngressesAndTheirTLSSecrets(t *testing.T) {
	e := newAuthEnv(t)
	other := azSecret("web-tls")
	other.Namespace = "other"
	e.create(t, azNode("a"), azSecret("web-tls"), azSecret("unrelated"), other,
		&manifests.Namespace{ObjectMeta: manifests.ObjectMeta{Name: "other"}},
		azIngress("default", "web", "web-tls"))
	ctx := ctxT(t)
	a := client.New(e.connect(t, "a", auth.RoleNode, "a"), client.AsNode("a"))

	if _, err := a.Get(ctx, "ingresses", "default", "web"); err != nil {
		t.Fatalf("node gets an ingress: %v", err)
	}
	items, _, err := a.List(ctx, "ingresses", "", "")
	if err != nil || len(items) != 1 {
		t.Fatalf("node lists ingresses: %d, %v", len(items), err)
	}
	obj, err := a.Get(ctx, "secrets", "default", "web-tls")
	if err != nil {
		t.Fatalf("node gets the TLS secret of an ingress: %v", err)
	}
	if got := string(obj.(*manifests.Secret).Data["k"]); got != "v-web-tls" {
		t.Errorf("secret: %q", got)
	}
	_, err = a.Get(ctx, "secrets", "default", "unrelated")
	wantForbidden(t, "node gets a secret no ingress names", err, `secrets "default/unrelated"`)
	_, err = a.Get(ctx, "secrets", "other", "web-tls")
	wantForbidden(t, "node gets a secret of the same name in another namespace", err, `secrets "other/web-tls"`)
	_, _, err = a.List(ctx, "secrets", "", "")
	wantForbidden(t, "node lists secrets", err, "list")

	// The watch subject is allowed by the node's NATS permissions.
	ch, err := a.Watch(ctx, "ingresses", "", "")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if ev.Type != client.Added || ev.Object.GetObjectMeta().Name != "web" {
			t.Fatalf("first event %s %s", ev.Type, ev.Object.GetObjectMeta().Name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no listed ingress")
	}
	if _, _, err := e.admin.Apply(ctx, azIngress("default", "second", "unrelated")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if ev.Object.GetObjectMeta().Name != "second" {
			t.Fatalf("event %s %s", ev.Type, ev.Object.GetObjectMeta().Name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event for a new ingress")
	}
	// Now an Ingress names it: the node may read it.
	if _, err := a.Get(ctx, "secrets", "default", "unrelated"); err != nil {
		t.Fatalf("node gets a secret an ingress now names: %v", err)
	}
}
