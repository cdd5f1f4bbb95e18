package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// Client talks to the control plane API over NATS request/reply.
type Client struct {
	nc *nats.Conn
	// node, when set, sends the requests as the agent of that node.
	node string
	// user, when set, sends the requests on that RBAC user's prefix
	// (user.go), detected from the connection's creds.
	user string
}

// New wraps an existing connection. The caller keeps ownership of nc.
func New(nc *nats.Conn, opts ...Option) *Client {
	c := &Client{nc: nc}
	if node, ok := boundNodes.Load(nc); ok {
		c.node = node.(string)
	}
	for _, o := range opts {
		o(c)
	}
	if c.node == "" {
		c.user = userOf(nc)
	}
	return c
}

// Conn returns the underlying NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// defaultTimeout bounds a call whose context has no deadline.
const defaultTimeout = 10 * time.Second

// call sends req to the API verb and decodes the result into out.
func (c *Client) call(ctx context.Context, verb string, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: encode request: %w", verb, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	subject := c.subject(verb)
	if _, served := c.userSubject(verb); c.user != "" && c.node == "" && !served {
		return Errorf(CodeForbidden, "%s: not available to RBAC user %q (docs/rbac.md lists what users may reach)", verb, c.user)
	}
	msg, err := c.request(ctx, subject, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return Errorf(CodeUnavailable, "%s (no responders on %s)", noResponders, subject)
		}
		if CodeOf(err) == CodeForbidden {
			return err
		}
		return Errorf(CodeUnavailable, "%s: %v", verb, err)
	}
	var resp Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("%s: decode reply: %w", verb, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Result, out); err != nil {
		return fmt.Errorf("%s: decode result: %w", verb, err)
	}
	return nil
}

// ApplyRaw sends an already encoded object (JSON) to apply.
func (c *Client) ApplyRaw(ctx context.Context, raw json.RawMessage, dryRun bool) (string, manifests.Object, error) {
	var res ApplyResult
	if err := c.call(ctx, messaging.VerbApply, ApplyRequest{Object: raw, DryRun: dryRun}, &res); err != nil {
		return "", nil, err
	}
	obj, err := manifests.FromJSON(res.Object)
	return res.Result, obj, err
}

// noResponders starts the message of the Unavailable error of a request
// nothing answered.
const noResponders = "the control plane API is not reachable"

// ErrApplyBatchUnsupported is returned by ApplyBatch when nothing answers
// on the batch subject: the API server is down, or older than the verb.
// Apply one object per request then.
var ErrApplyBatchUnsupported = errors.New("the API server does not answer batch applies")

// ApplyBatch applies objs (each an encoded object, as ApplyRaw sends) in one
// request and returns one item per object, in order; an object that failed
// has its error in its item. At most MaxApplyBatch objects, none twice.
func (c *Client) ApplyBatch(ctx context.Context, objs []json.RawMessage, dryRun bool) ([]ApplyBatchItem, error) {
	var res ApplyBatchResult
	err := c.call(ctx, VerbApplyBatch, ApplyBatchRequest{Objects: objs, DryRun: dryRun}, &res)
	var se *StatusError
	if errors.As(err, &se) && se.Code == CodeUnavailable && strings.HasPrefix(se.Message, noResponders) {
		return nil, fmt.Errorf("%w: %w", ErrApplyBatchUnsupported, err)
	}
	if err != nil {
		return nil, err
	}
	if len(res.Items) != len(objs) {
		return nil, fmt.Errorf("%s: %d results for %d objects", VerbApplyBatch, len(res.Items), len(objs))
	}
	return res.Items, nil
}

// Apply creates or updates obj and returns what was done and the stored object.
func (c *Client) Apply(ctx context.Context, obj manifests.Object) (string, manifests.Object, error) {
	raw, err := encode(obj)
	if err != nil {
		return "", nil, err
	}
	return c.ApplyRaw(ctx, raw, false)
}

// ApplyDryRun is Apply as a server-side dry run: the object is checked and
// admitted as it would be (defaults, quotas) and nothing is stored.
func (c *Client) ApplyDryRun(ctx context.Context, obj manifests.Object) (string, manifests.Object, error) {
	raw, err := encode(obj)
	if err != nil {
		return "", nil, err
	}
	return c.ApplyRaw(ctx, raw, true)
}

// Get reads one object. resource is a plural resource name ("pods").
func (c *Client) Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error) {
	var raw json.RawMessage
	if err := c.call(ctx, messaging.VerbGet, GetRequest{Resource: resource, Namespace: namespace, Name: name}, &raw); err != nil {
		return nil, err
	}
	return manifests.FromJSON(raw)
}

// List reads the objects of resource in namespace ("" = all namespaces)
// matching selector, and the revision the list was read at.
func (c *Client) List(ctx context.Context, resource, namespace, selector string) ([]manifests.Object, string, error) {
	var res ListResult
	if err := c.call(ctx, messaging.VerbList, ListRequest{Resource: resource, Namespace: namespace, LabelSelector: selector}, &res); err != nil {
		return nil, "", err
	}
	out := make([]manifests.Object, 0, len(res.Items))
	for _, raw := range res.Items {
		obj, err := manifests.FromJSON(raw)
		if err != nil {
			return nil, "", err
		}
		out = append(out, obj)
	}
	return out, res.ResourceVersion, nil
}

// Delete removes an object and returns it as it was.
func (c *Client) Delete(ctx context.Context, resource, namespace, name string) (manifests.Object, error) {
	return c.DeleteWithOptions(ctx, DeleteRequest{Resource: resource, Namespace: namespace, Name: name})
}

// DeleteWithOptions deletes the object req names, with req's
// resourceVersion precondition and propagation policy. With Foreground or
// Orphan (or when the object has finalizers) the object returned is the
// one marked for deletion, which goes once the garbage collector is done.
func (c *Client) DeleteWithOptions(ctx context.Context, req DeleteRequest) (manifests.Object, error) {
	var res DeleteResult
	if err := c.call(ctx, messaging.VerbDelete, req, &res); err != nil {
		return nil, err
	}
	return manifests.FromJSON(res.Object)
}

// Update replaces obj; its resourceVersion must be current (else Conflict).
func (c *Client) Update(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	return c.update(ctx, messaging.VerbUpdate, obj)
}

// UpdateStatus replaces only obj's status; its resourceVersion must be current.
func (c *Client) UpdateStatus(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	return c.update(ctx, messaging.VerbUpdateStatus, obj)
}

func (c *Client) update(ctx context.Context, verb string, obj manifests.Object) (manifests.Object, error) {
	raw, err := encode(obj)
	if err != nil {
		return nil, err
	}
	var res UpdateResult
	if err := c.call(ctx, verb, UpdateRequest{Object: raw}, &res); err != nil {
		return nil, err
	}
	return manifests.FromJSON(res.Object)
}

func encode(obj manifests.Object) (json.RawMessage, error) {
	if err := manifests.SetKind(obj); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.GetObjectMeta().Name, err)
	}
	return raw, nil
}

// Event is one change seen by Watch.
type Event struct {
	Type   string
	Object manifests.Object
}

// Watch lists the matching objects (as ADDED events) and then streams their
// changes until ctx is done. Changes at or below the listed revision are
// dropped, so nothing is seen twice or missed between list and watch.
func (c *Client) Watch(ctx context.Context, resource, namespace, selector string) (<-chan Event, error) {
	if c.user != "" && c.node == "" {
		// The watch subjects would bypass RBAC (docs/rbac.md).
		return nil, Errorf(CodeForbidden, "watch %s: not available to RBAC user %q: get or list instead (docs/rbac.md)", resource, c.user)
	}
	k, err := manifests.KindForResource(resource)
	if err != nil {
		return nil, Errorf(CodeNotFound, "%v", err)
	}
	sel, err := manifests.ParseSelector(selector)
	if err != nil {
		return nil, Errorf(CodeInvalid, "%v", err)
	}
	filterNS := namespace
	if filterNS == "" || !k.Namespaced {
		filterNS = "*"
	}
	msgs := make(chan *nats.Msg, 1024)
	sub, err := c.nc.ChanSubscribe(messaging.WatchFilter(k.Resource, filterNS), msgs)
	if err != nil {
		return nil, fmt.Errorf("watch %s: subscribe: %w", k.Resource, err)
	}
	// FlushWithContext needs a deadline; ctx (the watch's lifetime) may have none.
	fctx, fcancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		fctx, fcancel = context.WithTimeout(ctx, defaultTimeout)
	}
	err = c.nc.FlushWithContext(fctx)
	fcancel()
	if err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("watch %s: flush: %w", k.Resource, err)
	}
	items, rv, err := c.List(ctx, k.Resource, namespace, selector)
	if err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	var listRev uint64
	fmt.Sscan(rv, &listRev)
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer sub.Unsubscribe()
		for _, obj := range items {
			select {
			case out <- Event{Type: Added, Object: obj}:
			case <-ctx.Done():
				return
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				var we WatchEvent
				if json.Unmarshal(m.Data, &we) != nil {
					continue
				}
				obj, err := manifests.FromJSON(we.Object)
				if err != nil {
					continue
				}
				var rev uint64
				fmt.Sscan(obj.GetObjectMeta().ResourceVersion, &rev)
				if rev != 0 && rev <= listRev {
					continue
				}
				if !sel.Matches(obj.GetObjectMeta().Labels) {
					continue
				}
				select {
				case out <- Event{Type: we.Type, Object: obj}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
