// Package state keeps the agent's local view in bbolt: the pods last
// assigned to the node, the configmaps and secrets they use, the runtime
// handles of their containers and their last status. The agent starts its
// pods from it before it reaches the control plane.
package state

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketPods = []byte("pods")
	bucketMeta = []byte("meta")
)

// DB is the agent's state database.
type DB struct {
	db  *bolt.DB
	key []byte // encrypts secret refs (seal.go)
}

// Pod is everything the agent keeps about one assigned pod.
type Pod struct {
	// Pod is the assignment value (spec, metadata) as last received.
	Pod *manifests.Pod `json:"pod"`
	// Revision is the assignment's KV revision.
	Revision uint64 `json:"revision"`
	// SandboxID is the runtime's sandbox handle ("" when none).
	SandboxID string `json:"sandboxID,omitempty"`
	// Containers are the handles by container name.
	Containers map[string]Container `json:"containers,omitempty"`
	// Refs are the configmaps and secrets the pod uses, by RefKey.
	Refs map[string]json.RawMessage `json:"refs,omitempty"`
	// Status is the last status computed for the pod.
	Status *manifests.PodStatus `json:"status,omitempty"`
	// StartTime is when the agent first started the pod.
	StartTime time.Time `json:"startTime,omitzero"`
}

// Container holds the handles of one container.
type Container struct {
	ID           string `json:"id,omitempty"`
	RestartCount int32  `json:"restartCount"`
	// Image is the spec image Digest was resolved from.
	Image  string `json:"image,omitempty"`
	Digest string `json:"digest,omitempty"`
	// LastState is the previous termination, shown as lastState.
	LastState *manifests.ContainerStateTerminated `json:"lastState,omitempty"`
	// Terminated is set once the container has ended for good under the
	// restart policy (it is not started again, also not after a restart).
	Terminated *manifests.ContainerStateTerminated `json:"terminated,omitempty"`
}

// Equal reports whether c and o hold the same values (their termination
// records compared by value, not by pointer).
func (c Container) Equal(o Container) bool {
	return c.ID == o.ID && c.RestartCount == o.RestartCount && c.Image == o.Image && c.Digest == o.Digest &&
		sameTermination(c.LastState, o.LastState) && sameTermination(c.Terminated, o.Terminated)
}

func sameTermination(a, b *manifests.ContainerStateTerminated) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ExitCode == b.ExitCode && a.Signal == b.Signal && a.Reason == b.Reason && a.Message == b.Message &&
		a.StartedAt.Equal(b.StartedAt) && a.FinishedAt.Equal(b.FinishedAt) && a.ContainerID == b.ContainerID
}

// Key returns the state key of a pod.
func (p *Pod) Key() string {
	return Key(p.Pod.Namespace, p.Pod.Name, p.Pod.UID)
}

// Key builds the state key of a pod: namespace/name/uid.
func Key(namespace, name, uid string) string { return namespace + "/" + name + "/" + uid }

// RefKey is the key of a configmap or secret in Pod.Refs.
func RefKey(resource, name string) string { return resource + "/" + name }

// Open opens (creating when missing) the database at path. The secrets it
// keeps are encrypted with the key in KeyFileName beside it (created on
// first open).
func Open(path string) (*DB, error) {
	key, err := loadKey(filepath.Join(filepath.Dir(path), KeyFileName))
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPods, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: create buckets: %w", path, err)
	}
	return &DB{db: db, key: key}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Pods returns every stored pod.
func (d *DB) Pods() ([]*Pod, error) {
	var out []*Pod
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPods).ForEach(func(k, v []byte) error {
			var p Pod
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode pod %s: %w", k, err)
			}
			if p.Pod == nil {
				return fmt.Errorf("decode pod %s: no pod object", k)
			}
			d.openRefs(&p)
			out = append(out, &p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read pods: %w", err)
	}
	return out, nil
}

// Batch writes puts and removes the pods with the keys in deletes, in one
// transaction.
//
// Concurrent calls (pod workers) are coalesced into one bbolt transaction
// (bolt.DB.Batch); each returns only once its writes are committed.
func (d *DB) Batch(puts []*Pod, deletes []string) error {
	err := d.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPods)
		for _, p := range puts {
			if p.Pod == nil {
				return errors.New("pod record without a pod object")
			}
			sealed, err := d.sealRefs(p)
			if err != nil {
				return fmt.Errorf("encrypt secrets of pod %s: %w", p.Key(), err)
			}
			v, err := json.Marshal(sealed)
			if err != nil {
				return fmt.Errorf("encode pod %s: %w", p.Key(), err)
			}
			if err := b.Put([]byte(p.Key()), v); err != nil {
				return fmt.Errorf("put pod %s: %w", p.Key(), err)
			}
		}
		for _, k := range deletes {
			if err := b.Delete([]byte(k)); err != nil {
				return fmt.Errorf("delete pod %s: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// PutPod stores one pod.
func (d *DB) PutPod(p *Pod) error { return d.Batch([]*Pod{p}, nil) }

// DeletePod removes one pod by key.
func (d *DB) DeletePod(key string) error { return d.Batch(nil, []string{key}) }

// SetMeta stores a small value (e.g. the last assignment revision).
func (d *DB) SetMeta(key string, value []byte) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(key), value)
	})
}

// Meta reads a value stored with SetMeta; nil when missing.
func (d *DB) Meta(key string) ([]byte, error) {
	var out []byte
	err := d.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

var bucketOutbox = []byte("outbox")

// OutboxEntry is a pod status the agent could not send yet.
type OutboxEntry struct {
	// Key is the pod's namespace/name.
	Key string `json:"-"`
	// Seq orders the entries: they are sent oldest first.
	Seq uint64 `json:"seq"`
	// Pod is the encoded status object.
	Pod json.RawMessage `json:"pod"`
}

// Statuses returns the status outbox, oldest first.
func (d *DB) Statuses() ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode status %s: %w", k, err)
			}
			e.Key = string(k)
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read status outbox: %w", err)
	}
	slices.SortFunc(out, func(a, b OutboxEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// SaveStatuses writes puts to the status outbox and removes the entries
// with the keys in deletes, in one transaction.
func (d *DB) SaveStatuses(puts []OutboxEntry, deletes []string) error {
	if len(puts) == 0 && len(deletes) == 0 {
		return nil
	}
	err := d.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketOutbox)
		if err != nil {
			return err
		}
		for _, k := range deletes {
			if err := b.Delete([]byte(k)); err != nil {
				return fmt.Errorf("delete status %s: %w", k, err)
			}
		}
		for _, e := range puts {
			v, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("encode status %s: %w", e.Key, err)
			}
			if err := b.Put([]byte(e.Key), v); err != nil {
				return fmt.Errorf("put status %s: %w", e.Key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write status outbox: %w", err)
	}
	return nil
}
