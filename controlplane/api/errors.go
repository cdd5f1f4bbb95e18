package api

import (
	"context"
	"errors"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// statusError turns any error into the API error sent to the caller.
func statusError(err error) *client.StatusError {
	var se *client.StatusError
	if errors.As(err, &se) {
		return se
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return client.Errorf(client.CodeUnavailable, "the object store is unavailable: %v", err)
	}
	return client.Errorf(client.CodeInternal, "%v", err)
}

// invalid is the Invalid error of an object that failed validation,
// in Kubernetes' words: `Pod "x" is invalid: spec...: Required value`.
func invalid(kind, name string, err error) error {
	return client.Errorf(client.CodeInvalid, "%s %q is invalid: %v", kind, name, err)
}

// decodeObject strictly decodes an object sent by a client.
func decodeObject(raw []byte) (manifests.Object, manifests.Kind, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, manifests.Kind{}, client.Errorf(client.CodeInvalid, "object: Required value")
	}
	obj, err := manifests.DecodeJSONStrict(raw)
	if err != nil {
		return nil, manifests.Kind{}, client.Errorf(client.CodeInvalid, "%v", err)
	}
	k, err := manifests.KindOf(obj)
	if err != nil {
		return nil, manifests.Kind{}, client.Errorf(client.CodeInvalid, "%v", err)
	}
	return obj, k, nil
}

// resolveResource maps what a client typed (pods, pod, po) to a kind.
func resolveResource(resource string) (manifests.Kind, error) {
	if resource == "" {
		return manifests.Kind{}, client.Errorf(client.CodeInvalid, "resource: Required value")
	}
	k, err := manifests.KindForResource(resource)
	if err != nil {
		return k, client.Errorf(client.CodeNotFound, "%v", err)
	}
	return k, nil
}

// namespaceFor returns the namespace a request addresses: none for
// cluster-scoped kinds, "default" when a namespaced request names none.
func namespaceFor(k manifests.Kind, ns string) string {
	if !k.Namespaced {
		return ""
	}
	if ns == "" {
		return "default"
	}
	return ns
}

// requireName checks that a request names an object.
func requireName(name string) error {
	if name == "" {
		return client.Errorf(client.CodeInvalid, "name: Required value")
	}
	return nil
}
