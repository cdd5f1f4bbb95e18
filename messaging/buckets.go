package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Buckets are the JetStream KV buckets and the object store of the system.
type Buckets struct {
	Objects     jetstream.KeyValue
	Assignments jetstream.KeyValue
	Leases      jetstream.KeyValue
	Modules     jetstream.ObjectStore
	// JoinTokens holds the join tokens (hashed); entries expire after
	// MaxJoinTokenTTL plus a day.
	JoinTokens jetstream.KeyValue
	// NodeKeys records the user keys issued to each node.
	NodeKeys jetstream.KeyValue
}

// MaxJoinTokenTTL bounds the lifetime of a join token.
const MaxJoinTokenTTL = 30 * 24 * time.Hour

// BucketOptions tune how the buckets are created. The zero value is a
// single-replica file store.
type BucketOptions struct {
	// Replicas of each bucket (1 when 0); 3 on a three-server cluster.
	Replicas int
	// Memory keeps the buckets in memory instead of on disk (tests only).
	Memory bool
}

func (o BucketOptions) replicas() int {
	if o.Replicas <= 0 {
		return 1
	}
	return o.Replicas
}

func (o BucketOptions) storage() jetstream.StorageType {
	if o.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// OpenBuckets opens the buckets, creating those that do not exist yet.
func OpenBuckets(ctx context.Context, js jetstream.JetStream, opts BucketOptions) (*Buckets, error) {
	kv := func(name, desc string, maxAge ...time.Duration) (jetstream.KeyValue, error) {
		b, err := js.KeyValue(ctx, name)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("open bucket %s: %w", name, err)
		}
		b, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: desc,
			History:     1,
			Replicas:    opts.replicas(),
			Storage:     opts.storage(),
			TTL:         append(maxAge, 0)[0],
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			b, err = js.KeyValue(ctx, name)
		}
		if err != nil {
			return nil, fmt.Errorf("create bucket %s: %w", name, err)
		}
		return b, nil
	}
	var b Buckets
	var err error
	if b.Objects, err = kv(BucketObjects, "API objects"); err != nil {
		return nil, err
	}
	if b.Assignments, err = kv(BucketAssignments, "pods bound to nodes"); err != nil {
		return nil, err
	}
	if b.Leases, err = kv(BucketLeases, "node heartbeats"); err != nil {
		return nil, err
	}
	if b.JoinTokens, err = kv(BucketJoinTokens, "join tokens (hashed)", MaxJoinTokenTTL+24*time.Hour); err != nil {
		return nil, err
	}
	if b.NodeKeys, err = kv(BucketNodeKeys, "user keys issued to nodes"); err != nil {
		return nil, err
	}
	b.Modules, err = js.ObjectStore(ctx, StoreModules)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		b.Modules, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      StoreModules,
			Description: "wasm modules and images",
			Replicas:    opts.replicas(),
			Storage:     opts.storage(),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			if b.JoinTokens, err = kv(BucketJoinTokens, "join tokens (hashed)", MaxJoinTokenTTL+24*time.Hour); err != nil {
				return nil, err
			}
			if b.NodeKeys, err = kv(BucketNodeKeys, "user keys issued to nodes"); err != nil {
				return nil, err
			}
			b.Modules, err = js.ObjectStore(ctx, StoreModules)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", StoreModules, err)
	}
	return &b, nil
}
