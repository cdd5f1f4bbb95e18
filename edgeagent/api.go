package edgeagent

import (
	"context"
	"io"
	"sync"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/nats-io/nats.go"
)

// API is what the agent needs of the control plane (client.Client).
type API interface {
	Apply(ctx context.Context, obj manifests.Object) (string, manifests.Object, error)
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	UpdateStatus(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	ResolveModule(ctx context.Context, ref string) (string, error)
	FetchModule(ctx context.Context, digest string, w io.Writer) error
	// ResolveImage and FetchBlob read images pushed to the control plane.
	ResolveImage(ctx context.Context, ref string) (string, error)
	FetchBlob(ctx context.Context, digest string, w io.Writer) error
}

func newAPI(nc *nats.Conn) API { return &connAPI{c: client.New(nc), nc: nc} }

// newNodeAPI talks to the control plane as the agent of node: on the
// node-scoped API subjects, which are all a node's credentials allow.
func newNodeAPI(nc *nats.Conn, node string) API {
	return &connAPI{c: client.New(nc, client.AsNode(node)), nc: nc}
}

// connAPI fails fast while the connection is down instead of waiting for
// a request timeout, so offline pods start from the local state at once.
type connAPI struct {
	c  *client.Client
	nc *nats.Conn
}

func (a *connAPI) offline() error {
	if a.nc.IsConnected() {
		return nil
	}
	return client.Errorf(client.CodeUnavailable, "not connected to the control plane (%s)", a.nc.Status())
}

func (a *connAPI) Apply(ctx context.Context, obj manifests.Object) (string, manifests.Object, error) {
	if err := a.offline(); err != nil {
		return "", nil, err
	}
	return a.c.Apply(ctx, obj)
}

func (a *connAPI) Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error) {
	if err := a.offline(); err != nil {
		return nil, err
	}
	return a.c.Get(ctx, resource, namespace, name)
}

func (a *connAPI) Update(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	if err := a.offline(); err != nil {
		return nil, err
	}
	return a.c.Update(ctx, obj)
}

func (a *connAPI) UpdateStatus(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	if err := a.offline(); err != nil {
		return nil, err
	}
	return a.c.UpdateStatus(ctx, obj)
}

func (a *connAPI) ResolveModule(ctx context.Context, ref string) (string, error) {
	if err := a.offline(); err != nil {
		if mr, perr := client.ParseModuleRef(ref); perr == nil && mr.Digest != "" {
			return mr.Digest, nil
		}
		return "", err
	}
	return a.c.ResolveModule(ctx, ref)
}

func (a *connAPI) FetchModule(ctx context.Context, digest string, w io.Writer) error {
	if err := a.offline(); err != nil {
		return err
	}
	return a.c.FetchModule(ctx, digest, w)
}

func (a *connAPI) ResolveImage(ctx context.Context, ref string) (string, error) {
	if err := a.offline(); err != nil {
		return "", err
	}
	return a.c.ResolveImage(ctx, ref)
}

func (a *connAPI) FetchBlob(ctx context.Context, digest string, w io.Writer) error {
	if err := a.offline(); err != nil {
		return err
	}
	return a.c.FetchBlob(ctx, digest, w)
}

// connWatch tells waiters when the connection comes up (again).
type connWatch struct {
	nc   *nats.Conn
	ch   chan nats.Status
	mu   sync.Mutex
	next chan struct{} // closed at the next CONNECTED
	done chan struct{}
}

func newConnWatch(nc *nats.Conn) *connWatch {
	w := &connWatch{nc: nc, ch: nc.StatusChanged(nats.CONNECTED), next: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for range w.ch {
			w.mu.Lock()
			close(w.next)
			w.next = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	return w
}

// connected returns a channel closed at the next (re)connection.
func (w *connWatch) connected() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

func (w *connWatch) close() {
	w.nc.RemoveStatusListener(w.ch)
	<-w.done
}
