// Package store keeps API objects in the JetStream KV bucket of objects:
// one key per object (messaging.ObjectKey), the value its JSON without
// metadata.resourceVersion, which is the KV revision of the entry.
package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// Store reads and writes API objects. It is safe for concurrent use.
type Store struct {
	kv  jetstream.KeyValue
	js  jetstream.JetStream // for List's check of missed keys (list.go); may be nil
	gc  *committer          // group commit of creates and updates (commit.go); nil without js
	now func() time.Time
	kr  *Keyring                 // encrypts Secrets at rest when set (secrets.go)
	adm atomic.Pointer[Admitter] // admission.go
}

// New returns a store over kv, the edge-objects bucket.
func New(kv jetstream.KeyValue, opts ...Option) *Store {
	s := &Store{kv: kv, now: func() time.Time { return time.Now().UTC().Truncate(time.Second) }}
	for _, o := range opts {
		o(s)
	}
	return s
}

// target resolves obj's resource and the namespace it is stored under.
func target(obj manifests.Object) (manifests.Kind, string, error) {
	k, err := manifests.KindOf(obj)
	if err != nil {
		return k, "", client.Errorf(client.CodeInvalid, "%v", err)
	}
	meta := obj.GetObjectMeta()
	if meta.Name == "" && meta.GenerateName == "" {
		return k, "", client.Errorf(client.CodeInvalid, "%s: metadata.name: Required value", k.Kind)
	}
	ns := meta.Namespace
	if !k.Namespaced {
		ns = ""
	} else if ns == "" {
		return k, "", client.Errorf(client.CodeInvalid, "%s %q: metadata.namespace: Required value", k.Kind, meta.Name)
	}
	return k, ns, nil
}

// resolve maps a resource name to its kind and the namespace used in keys
// (cluster-scoped kinds have none).
func resolve(resource, namespace string) (manifests.Kind, string, error) {
	k, err := manifests.KindForResource(resource)
	if err != nil {
		return k, "", client.Errorf(client.CodeNotFound, "%v", err)
	}
	if !k.Namespaced {
		namespace = ""
	}
	return k, namespace, nil
}

// encode returns obj's stored form under key: kind set, resourceVersion
// stripped, a Secret's data encrypted.
func (s *Store) encode(key string, obj manifests.Object) ([]byte, error) {
	data, err := encode(obj)
	if err != nil {
		return nil, err
	}
	return s.seal(key, data)
}

// encode returns obj's stored form in clear: kind set, resourceVersion
// stripped.
func encode(obj manifests.Object) ([]byte, error) {
	if err := manifests.SetKind(obj); err != nil {
		return nil, err
	}
	meta := obj.GetObjectMeta()
	rv := meta.ResourceVersion
	meta.ResourceVersion = ""
	defer func() { meta.ResourceVersion = rv }()
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", meta.Name, err)
	}
	return data, nil
}

// decode reads a stored value (decrypting a Secret) and sets its
// resourceVersion to rev.
func (s *Store) decode(key string, value []byte, rev uint64) (manifests.Object, error) {
	clear, _, err := s.open(key, value)
	if err != nil {
		return nil, err
	}
	return decodeClear(key, clear, rev)
}

// decodeClear reads a stored value in clear and sets its resourceVersion
// to rev.
func decodeClear(key string, value []byte, rev uint64) (manifests.Object, error) {
	obj, err := manifests.FromJSON(value)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", key, err)
	}
	obj.GetObjectMeta().ResourceVersion = strconv.FormatUint(rev, 10)
	return obj, nil
}

// ParseResourceVersion reads a resourceVersion; "" is 0.
func ParseResourceVersion(rv string) (uint64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0, client.Errorf(client.CodeInvalid, "metadata.resourceVersion: Invalid value: %q: must be a decimal revision", rv)
	}
	return n, nil
}

func notFound(resource, name string) error {
	return client.Errorf(client.CodeNotFound, "%s %q not found", resource, name)
}

func conflict(resource, name string) error {
	return client.Errorf(client.CodeConflict,
		"Operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again",
		resource, name)
}

func isWrongLastSequence(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// generatedNameAttempts bounds the retries of a create with generateName
// whose random name was taken.
const generatedNameAttempts = 8

// Create stores a new object, setting uid, creationTimestamp, generation 1
// and resourceVersion. It fails with AlreadyExists when the object exists.
// Without a name, metadata.generateName plus 5 random characters is used,
// as in Kubernetes. obj is not modified; the stored object is returned.
func (s *Store) Create(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	if m := obj.GetObjectMeta(); m.Name != "" || m.GenerateName == "" {
		return s.create(ctx, obj)
	}
	for attempt := 1; ; attempt++ {
		named, err := clone(obj)
		if err != nil {
			return nil, err
		}
		named.GetObjectMeta().Name = named.GetObjectMeta().GenerateName + randomSuffix()
		created, err := s.create(ctx, named)
		if client.CodeOf(err) == client.CodeExists && attempt < generatedNameAttempts {
			continue
		}
		return created, err
	}
}

// randomSuffix is 5 characters of Kubernetes' generateName alphabet.
func randomSuffix() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	var b [5]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

func (s *Store) create(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	k, ns, err := target(obj)
	if err != nil {
		return nil, err
	}
	obj, err = clone(obj)
	if err != nil {
		return nil, err
	}
	meta := obj.GetObjectMeta()
	meta.Namespace = ns
	meta.UID = newUID()
	meta.CreationTimestamp = s.now()
	meta.Generation = 1
	meta.ResourceVersion = ""
	var undo func(context.Context)
	if adm := s.admitter(); adm != nil {
		if undo, err = adm.AdmitCreate(ctx, obj); err != nil {
			return nil, err
		}
	}
	key := messaging.ObjectKey(k.Resource, ns, meta.Name)
	rev, err := s.put(ctx, key, obj)
	if err != nil {
		if undo != nil {
			undo(context.WithoutCancel(ctx))
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSequence(err) {
			return nil, client.Errorf(client.CodeExists, "%s %q already exists", k.Resource, meta.Name)
		}
		return nil, err
	}
	meta.ResourceVersion = strconv.FormatUint(rev, 10)
	return obj, nil
}

// put encodes obj and creates its key.
func (s *Store) put(ctx context.Context, key string, obj manifests.Object) (uint64, error) {
	data, err := s.encode(key, obj)
	if err != nil {
		return 0, err
	}
	rev, err := s.kvCreate(ctx, key, data)
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSequence(err) {
		return 0, fmt.Errorf("create %s: %w", key, err)
	}
	return rev, err
}

// Update replaces an object if obj's metadata.resourceVersion is the stored
// one (Conflict otherwise, NotFound when it does not exist). uid and
// creationTimestamp are kept from the stored object; generation is bumped
// when anything but metadata and status changed.
func (s *Store) Update(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	return s.UpdateFrom(ctx, obj, nil)
}

// UpdateFrom is Update for a caller that holds the stored object obj was
// made from: from, read from the store or a watch of it at obj's
// resourceVersion and not changed since, stands for the read Update makes
// first (one round trip to JetStream and a decode less; the write still
// compares and swaps on the revision, so a newer stored object is a
// Conflict as with Update). A from of another object or revision is
// ignored.
func (s *Store) UpdateFrom(ctx context.Context, obj, from manifests.Object) (manifests.Object, error) {
	k, ns, err := target(obj)
	if err != nil {
		return nil, err
	}
	meta := obj.GetObjectMeta()
	if meta.ResourceVersion == "" {
		return nil, client.Errorf(client.CodeInvalid, "%s %q is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update", k.Kind, meta.Name)
	}
	rev, err := ParseResourceVersion(meta.ResourceVersion)
	if err != nil {
		return nil, err
	}
	key := messaging.ObjectKey(k.Resource, ns, meta.Name)
	cur := from
	if !sameRevision(from, obj, k, ns, meta.Name, meta.ResourceVersion) {
		if cur, err = s.get(ctx, key, k.Resource, meta.Name); err != nil {
			return nil, err
		}
	}
	curMeta := cur.GetObjectMeta()
	if curMeta.ResourceVersion != strconv.FormatUint(rev, 10) {
		return nil, conflict(k.Resource, meta.Name)
	}
	obj, err = clone(obj)
	if err != nil {
		return nil, err
	}
	meta = obj.GetObjectMeta()
	meta.Namespace = ns
	if meta.UID == "" {
		meta.UID = curMeta.UID
	}
	if meta.CreationTimestamp.IsZero() {
		meta.CreationTimestamp = curMeta.CreationTimestamp
	}
	meta.Generation = curMeta.Generation
	changed, err := specChanged(cur, obj)
	if err != nil {
		return nil, err
	}
	if changed {
		meta.Generation++
	}
	data, err := s.encode(key, obj)
	if err != nil {
		return nil, err
	}
	newRev, err := s.kvUpdate(ctx, key, data, rev)
	if err != nil {
		if isWrongLastSequence(err) {
			return nil, conflict(k.Resource, meta.Name)
		}
		return nil, fmt.Errorf("update %s: %w", key, err)
	}
	meta.ResourceVersion = strconv.FormatUint(newRev, 10)
	if adm := s.admitter(); adm != nil {
		adm.Updated(ctx, cur, obj)
	}
	return obj, nil
}

// sameRevision reports whether from is the object of obj's kind k named
// namespace/name at resourceVersion rv.
func sameRevision(from, obj manifests.Object, k manifests.Kind, namespace, name, rv string) bool {
	if from == nil || reflect.TypeOf(from) != reflect.TypeOf(obj) {
		return false
	}
	m := from.GetObjectMeta()
	fns := ""
	if k.Namespaced {
		fns = m.Namespace
	}
	return m.Name == name && fns == namespace && m.ResourceVersion == rv
}

// specChanged reports whether anything but metadata and status differs.
func specChanged(a, b manifests.Object) (bool, error) {
	strip := func(o manifests.Object) ([]byte, error) {
		raw, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		delete(m, "metadata")
		delete(m, "status")
		return json.Marshal(m) // map keys are sorted
	}
	x, err := strip(a)
	if err != nil {
		return false, fmt.Errorf("compare %s: %w", a.GetObjectMeta().Name, err)
	}
	y, err := strip(b)
	if err != nil {
		return false, fmt.Errorf("compare %s: %w", b.GetObjectMeta().Name, err)
	}
	return !bytes.Equal(x, y), nil
}

// Get reads one object.
func (s *Store) Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error) {
	k, ns, err := resolve(resource, namespace)
	if err != nil {
		return nil, err
	}
	return s.get(ctx, messaging.ObjectKey(k.Resource, ns, name), k.Resource, name)
}

func (s *Store) get(ctx context.Context, key, resource, name string) (manifests.Object, error) {
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, notFound(resource, name)
		}
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return s.decode(key, e.Value(), e.Revision())
}

// Delete removes an object and returns it as it was last stored. With rev
// > 0 the delete only happens if the stored revision is rev (Conflict
// otherwise).
func (s *Store) Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error) {
	k, ns, err := resolve(resource, namespace)
	if err != nil {
		return nil, err
	}
	key := messaging.ObjectKey(k.Resource, ns, name)
	for attempt := 0; ; attempt++ {
		e, err := s.kv.Get(ctx, key)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
				return nil, notFound(k.Resource, name)
			}
			return nil, fmt.Errorf("delete %s: read: %w", key, err)
		}
		if rev > 0 && e.Revision() != rev {
			return nil, conflict(k.Resource, name)
		}
		obj, err := s.decode(key, e.Value(), e.Revision())
		if err != nil && isSecretKey(key) {
			// A secret whose key is gone can still be deleted.
			obj, err = decodeClear(key, clearPart(e.Value()), e.Revision())
		}
		if err != nil {
			return nil, err
		}
		err = s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		if err == nil {
			if adm := s.admitter(); adm != nil {
				adm.Deleted(ctx, obj)
			}
			return obj, nil
		}
		if !isWrongLastSequence(err) {
			return nil, fmt.Errorf("delete %s: %w", key, err)
		}
		if rev > 0 || attempt >= 10 {
			return nil, conflict(k.Resource, name)
		}
	}
}

// clone deep-copies obj through its JSON form, with kind set.
func clone(obj manifests.Object) (manifests.Object, error) {
	if err := manifests.SetKind(obj); err != nil {
		return nil, client.Errorf(client.CodeInvalid, "%v", err)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", obj.GetObjectMeta().Name, err)
	}
	return manifests.FromJSON(raw)
}
