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
	// Heartbeats holds the node leases, in memory (BucketHeartbeats).
	Heartbeats jetstream.KeyValue
	// Leader holds the leader-election leases (BucketLeader).
	Leader jetstream.KeyValue
	// Claims holds the pod CIDR claims (BucketClaims).
	Claims  jetstream.KeyValue
	Modules jetstream.ObjectStore
	// JoinTokens holds the join tokens (hashed); entries expire after
	// MaxJoinTokenTTL plus a day.
	JoinTokens jetstream.KeyValue
	// NodeKeys records the user keys issued to each node.
	NodeKeys jetstream.KeyValue
	// Usage holds the latest resource usage each agent reported, under
	// UsageKey, in memory, for UsageTTL (docs/top.md).
	Usage jetstream.KeyValue
}

// Resource usage (docs/top.md): agents report on the node-scoped subject
// of VerbUsage, edgectl top reads through VerbTop, the control plane keeps
// the latest report of each node in BucketUsage.
const (
	// BucketUsage holds one usage report per node under UsageKey.
	BucketUsage = "edge-usage"
	// UsageTTL is how long a report is kept: a node silent for longer
	// drops out of edgectl top.
	UsageTTL = 5 * time.Minute
	// VerbUsage is the node-scoped verb an agent reports its usage with.
	VerbUsage = "usage"
	// VerbTop reads the usage of nodes or pods (edgectl top).
	VerbTop = "top"
)

// UsageKey is the key of node's usage report in BucketUsage.
func UsageKey(node string) string { return "node." + EncodeToken(node) }

// UsageFilter matches every key of BucketUsage.
func UsageFilter() string { return "node.>" }

// openUsage opens BucketUsage, creating it in memory: usage is a figure
// that is stale within seconds, so it is not worth a disk write (and the
// fsync of sync_interval: always) per report; after a restart of the
// NATS server it is back within one report interval.
func openUsage(ctx context.Context, js jetstream.JetStream, opts BucketOptions) (jetstream.KeyValue, error) {
	return openMemoryKV(ctx, js, opts, jetstream.KeyValueConfig{
		Bucket:      BucketUsage,
		Description: "latest resource usage of each node and its pods",
		TTL:         UsageTTL,
	})
}

// openHeartbeats opens BucketHeartbeats.
func openHeartbeats(ctx context.Context, js jetstream.JetStream, opts BucketOptions) (jetstream.KeyValue, error) {
	return openMemoryKV(ctx, js, opts, jetstream.KeyValueConfig{Bucket: BucketHeartbeats, Description: "node heartbeats"})
}

// openMemoryKV opens the bucket of cfg, creating it in memory storage with
// one value per key when it does not exist, and scales an existing one up
// as the others are.
func openMemoryKV(ctx context.Context, js jetstream.JetStream, opts BucketOptions, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.History, cfg.Replicas, cfg.Storage = 1, opts.replicas(), jetstream.MemoryStorage
	b, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		err = opts.retryPlacement(ctx, func() (err error) {
			b, err = js.CreateKeyValue(ctx, cfg)
			return err
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			b, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", cfg.Bucket, replicasError(err, KVStream(cfg.Bucket), opts.replicas()))
	}
	if _, err := ensureStream(ctx, js, KVStream(cfg.Bucket), opts, false); err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", cfg.Bucket, err)
	}
	return b, nil
}

// MaxJoinTokenTTL bounds the lifetime of a join token.
const MaxJoinTokenTTL = 30 * 24 * time.Hour

// MaxReplicas is the largest replica count JetStream accepts.
const MaxReplicas = 5

// BucketOptions tune how the buckets are created. The zero value is a
// single-replica file store.
type BucketOptions struct {
	// Replicas of each bucket, object store and stream (1 when 0); 3 on
	// a three-server cluster. An existing one with fewer replicas is
	// scaled up to Replicas; one with more keeps them (a process started
	// with the default never scales a cluster's buckets down).
	Replicas int
	// Memory keeps the buckets in memory instead of on disk (tests only).
	Memory bool
	// PlacementWait is how long creating or scaling up a replicated stream
	// is retried while the cluster has too few servers for it (a cluster
	// that has just started may not know all its peers yet); 0 fails at
	// once.
	PlacementWait time.Duration
}

// Check reports a replica count JetStream cannot have.
func (o BucketOptions) Check() error {
	if o.Replicas < 0 || o.Replicas > MaxReplicas {
		return fmt.Errorf("replicas %d: want 1 to %d (3 on a three-server NATS cluster)", o.Replicas, MaxReplicas)
	}
	return nil
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

// replicasError explains an error of creating or updating stream with
// want replicas when the NATS server is not clustered, or when fewer
// JetStream servers than want are up; other errors are returned as they are.
func replicasError(err error, stream string, want int) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	switch apiErr.ErrorCode {
	case jsErrCodeReplicasNotSupported:
		return fmt.Errorf("stream %s with %d replicas: the NATS server is not part of a JetStream cluster; run a cluster of at least %d servers or use 1 replica: %w", stream, want, want, err)
	case jsErrCodeClusterNoPeers, jsErrCodeInsufficientResources:
		return fmt.Errorf("stream %s with %d replicas: fewer than %d JetStream servers of the NATS cluster are up (or they lack storage): %w", stream, want, want, err)
	}
	return err
}

// placementRetry is the pause between retries of PlacementWait.
const placementRetry = 250 * time.Millisecond

// retryPlacement calls f until it succeeds, fails with an error other than
// too few servers, PlacementWait passes or ctx is done.
func (o BucketOptions) retryPlacement(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(o.PlacementWait)
	for {
		err := f()
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) ||
			(apiErr.ErrorCode != jsErrCodeClusterNoPeers && apiErr.ErrorCode != jsErrCodeInsufficientResources) ||
			time.Now().Add(placementRetry).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(placementRetry):
		}
	}
}

// Error codes of JetStream that nats.go does not name.
const (
	jsErrCodeClusterNoPeers        jetstream.ErrorCode = 10005
	jsErrCodeInsufficientResources jetstream.ErrorCode = 10023
	jsErrCodeReplicasNotSupported  jetstream.ErrorCode = 10074
)

// StreamMaxConsumers is the consumer limit set on every stream: nats-server
// (2.11 on) allows 1,000 consumers per stream unless the stream says
// otherwise. Agents follow their assignments by notification (notify.go),
// but a resync and an agent that fell back to a KV watch (credentials
// issued before notifications) each hold one for a while; with the default,
// watching agents past the ~1,000th never saw their pods.
const StreamMaxConsumers = 1 << 20

// ensureStream raises the replicas of the existing stream to want (never
// lowers them) and, with leaderReads, once the stream is replicated, turns
// its direct gets off. A direct get may be answered by a follower that has
// not stored the latest write yet (a Get right after an acknowledged Put
// then misses it, and a compare-and-swap built on it fails); a plain get is
// answered by the stream leader, which holds every acknowledged write. It
// reports whether it changed the stream. It also raises the stream's
// consumer limit to StreamMaxConsumers and allows atomic batches.
func ensureStream(ctx context.Context, js jetstream.JetStream, stream string, opts BucketOptions, leaderReads bool) (bool, error) {
	want := opts.replicas()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", stream, err)
	}
	cfg := s.CachedInfo().Config
	replicas := max(cfg.Replicas, want)
	direct := cfg.AllowDirect && (!leaderReads || replicas <= 1)
	consumers := cfg.MaxConsumers
	if consumers < StreamMaxConsumers {
		consumers = StreamMaxConsumers
	}
	// Atomic batches let the store commit many writes with one disk sync
	// (controlplane/store/commit.go); servers before 2.12 ignore it.
	if replicas == cfg.Replicas && direct == cfg.AllowDirect && consumers == cfg.MaxConsumers && cfg.AllowAtomicPublish {
		return false, nil
	}
	cfg.Replicas, cfg.AllowDirect, cfg.MaxConsumers, cfg.AllowAtomicPublish = replicas, direct, consumers, true
	if err := opts.retryPlacement(ctx, func() error { _, err := js.UpdateStream(ctx, cfg); return err }); err != nil {
		return false, fmt.Errorf("update stream %s to %d replicas, reads from the leader: %w", stream, cfg.Replicas, replicasError(err, stream, cfg.Replicas))
	}
	return true, nil
}

// OpenBuckets opens the buckets, creating those that do not exist yet with
// opts.Replicas replicas and scaling up those that have fewer.
func OpenBuckets(ctx context.Context, js jetstream.JetStream, opts BucketOptions) (*Buckets, error) {
	if err := opts.Check(); err != nil {
		return nil, fmt.Errorf("open buckets: %w", err)
	}
	create := func(name, desc string, maxAge ...time.Duration) (jetstream.KeyValue, error) {
		b, err := js.KeyValue(ctx, name)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("open bucket %s: %w", name, err)
		}
		err = opts.retryPlacement(ctx, func() (err error) {
			b, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:      name,
				Description: desc,
				History:     1,
				Replicas:    opts.replicas(),
				Storage:     opts.storage(),
				TTL:         append(maxAge, 0)[0],
			})
			return err
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			b, err = js.KeyValue(ctx, name)
		}
		if err != nil {
			return nil, fmt.Errorf("create bucket %s: %w", name, replicasError(err, KVStream(name), opts.replicas()))
		}
		return b, nil
	}
	// kv opens a bucket; leaderReads: see ensureStream. The buckets agents
	// read keep direct gets: a node's permissions allow only direct gets of
	// its own keys (messaging/auth), a plain get names no subject.
	kv := func(name, desc string, leaderReads bool, maxAge ...time.Duration) (jetstream.KeyValue, error) {
		b, err := create(name, desc, maxAge...)
		if err != nil {
			return nil, err
		}
		changed, err := ensureStream(ctx, js, KVStream(name), opts, leaderReads)
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", name, err)
		}
		if changed { // the handle knows whether to use direct gets
			if b, err = js.KeyValue(ctx, name); err != nil {
				return nil, fmt.Errorf("open bucket %s: %w", name, err)
			}
		}
		return b, nil
	}
	var b Buckets
	var err error
	if b.Objects, err = kv(BucketObjects, "API objects", true); err != nil {
		return nil, err
	}
	if b.Assignments, err = kv(BucketAssignments, "pods bound to nodes", false); err != nil {
		return nil, err
	}
	// Agents follow their assignments through core NATS notifications
	// (notify.go); an existing bucket gets the rule on start.
	if _, err := ensureRePublish(ctx, js, KVStream(BucketAssignments), AssignmentsRePublish(), opts); err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketAssignments, err)
	}
	if b.Leases, err = kv(BucketLeases, "allocations", false); err != nil {
		return nil, err
	}
	if b.Heartbeats, err = openHeartbeats(ctx, js, opts); err != nil {
		return nil, err
	}
	if b.Leader, err = kv(BucketLeader, "leader election", true); err != nil {
		return nil, err
	}
	if b.Claims, err = kv(BucketClaims, "pod CIDR claims", true); err != nil {
		return nil, err
	}
	if b.JoinTokens, err = kv(BucketJoinTokens, "join tokens (hashed)", true, MaxJoinTokenTTL+24*time.Hour); err != nil {
		return nil, err
	}
	if b.NodeKeys, err = kv(BucketNodeKeys, "user keys issued to nodes", true); err != nil {
		return nil, err
	}
	if b.Usage, err = openUsage(ctx, js, opts); err != nil {
		return nil, err
	}
	b.Modules, err = js.ObjectStore(ctx, StoreModules)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		err = opts.retryPlacement(ctx, func() (err error) {
			b.Modules, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
				Bucket:      StoreModules,
				Description: "wasm modules and images",
				Replicas:    opts.replicas(),
				Storage:     opts.storage(),
			})
			return err
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			b.Modules, err = js.ObjectStore(ctx, StoreModules)
		}
		err = replicasError(err, ObjectStream(StoreModules), opts.replicas())
	}
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", StoreModules, err)
	}
	changed, err := ensureStream(ctx, js, ObjectStream(StoreModules), opts, true)
	if err == nil && changed {
		b.Modules, err = js.ObjectStore(ctx, StoreModules)
	}
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", StoreModules, err)
	}
	return &b, nil
}
