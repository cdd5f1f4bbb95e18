// Package assign publishes each bound pod to its node: the pod (without
// status) is put in the assignments bucket under
// messaging.AssignmentKey(node, namespace, pod), where the node's agent
// watches it, and the key is deleted when the pod goes away.
package assign

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// KV is what the controller needs of the assignments bucket.
type KV interface {
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
	WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

// Lister is the read-only pod cache.
type Lister interface {
	Get(key string) (manifests.Object, bool)
}

// Controller keeps the assignments bucket equal to the bound pods.
type Controller struct {
	kv    KV
	pods  Lister
	queue *controller.Queue

	mu sync.Mutex
	// keys holds, per pod key, the assignment keys that exist for it, with
	// the fingerprint of what each holds.
	keys map[string]map[string]string
}

// New returns a controller writing to kv. Register PodChanged as a
// handler of the pod informer, then call Run.
func New(kv KV, pods Lister) *Controller {
	return &Controller{kv: kv, pods: pods, queue: controller.NewQueue(100*time.Millisecond, 30*time.Second), keys: map[string]map[string]string{}}
}

// PodChanged is the pod informer's handler.
func (c *Controller) PodChanged(old, new manifests.Object) {
	if new != nil {
		c.queue.Add(controller.Key(new))
	} else if old != nil {
		c.queue.Add(controller.Key(old))
	}
}

// Load reads the assignments that exist, so that Sync can compare with
// them and remove those of pods that no longer exist. It queues every pod
// that has one.
func (c *Controller) Load(ctx context.Context) error {
	w, err := c.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("read assignments: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read assignments: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("read assignments: watcher closed")
			}
			if e == nil {
				return nil
			}
			_, ns, name, err := messaging.ParseAssignmentKey(e.Key())
			if err != nil {
				continue // not ours; leave it
			}
			fp := ""
			if pod, err := manifests.FromJSON(e.Value()); err == nil {
				if p, ok := pod.(*manifests.Pod); ok {
					fp = fingerprint(p)
				}
			}
			podKey := controller.Key(&manifests.Pod{ObjectMeta: manifests.ObjectMeta{Namespace: ns, Name: name}})
			c.mu.Lock()
			if c.keys[podKey] == nil {
				c.keys[podKey] = map[string]string{}
			}
			c.keys[podKey][e.Key()] = fp
			c.mu.Unlock()
			c.queue.Add(podKey)
		}
	}
}

// Run loads the existing assignments, waits for the pod cache and then
// reconciles until ctx is done.
func (c *Controller) Run(ctx context.Context, podsSynced func(context.Context) error) error {
	if err := c.Load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := podsSynced(ctx); err != nil {
		return nil // ctx done
	}
	controller.RunWorkers(ctx, c.queue, 4, c.Sync)
	return nil
}

// Sync makes the assignments of the pod under key match the pod: one key
// on its node holding it when it is bound, none otherwise.
func (c *Controller) Sync(ctx context.Context, key string) error {
	var pod *manifests.Pod
	if obj, ok := c.pods.Get(key); ok {
		pod, _ = obj.(*manifests.Pod)
	}
	want, fp := "", ""
	if pod != nil && pod.Spec.NodeName != "" {
		want = messaging.AssignmentKey(pod.Spec.NodeName, pod.Namespace, pod.Name)
		fp = fingerprint(pod)
	}
	c.mu.Lock()
	have := map[string]string{}
	for k, v := range c.keys[key] {
		have[k] = v
	}
	c.mu.Unlock()

	var errs []error
	for k := range have {
		if k == want {
			continue
		}
		if err := c.kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, fmt.Errorf("delete assignment %s: %w", k, err))
			continue
		}
		c.setKey(key, k, "", false)
	}
	if want != "" {
		if cur, ok := have[want]; !ok || cur != fp {
			val, err := Value(pod)
			if err != nil {
				return err
			}
			if _, err := c.kv.Put(ctx, want, val); err != nil {
				errs = append(errs, fmt.Errorf("put assignment %s: %w", want, err))
			} else {
				c.setKey(key, want, fp, true)
			}
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) setKey(podKey, kvKey, fp string, present bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !present {
		delete(c.keys[podKey], kvKey)
		if len(c.keys[podKey]) == 0 {
			delete(c.keys, podKey)
		}
		return
	}
	if c.keys[podKey] == nil {
		c.keys[podKey] = map[string]string{}
	}
	c.keys[podKey][kvKey] = fp
}

// Value is the assignment of pod as agents read it: kind, apiVersion,
// metadata (with the stored pod's resourceVersion) and spec, no status.
func Value(pod *manifests.Pod) ([]byte, error) {
	v := manifests.Pod{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	raw, err := json.Marshal(&v)
	if err != nil {
		return nil, fmt.Errorf("encode assignment of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return raw, nil
}

// fingerprint covers what an agent acts on. It leaves out the
// resourceVersion and status, so that a pod's status updates (written by
// its own agent) do not rewrite the assignment and wake the agent.
func fingerprint(pod *manifests.Pod) string {
	raw, _ := json.Marshal(struct {
		UID               string
		Labels            map[string]string
		Annotations       map[string]string
		DeletionTimestamp *time.Time
		Spec              manifests.PodSpec
	}{pod.UID, pod.Labels, pod.Annotations, pod.DeletionTimestamp, pod.Spec})
	sum := sha256.Sum256(raw)
	return fmt.Sprintf("%x", sum[:])
}
