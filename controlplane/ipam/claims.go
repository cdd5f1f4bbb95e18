// Package ipam allocates the control plane's addresses: Service cluster IPs
// and node ports (at the API, on create and update) and node pod CIDRs
// (by the nodeipam controller). The allocation state is derived from the
// stored objects; a claim key per address, created with a KV create (a
// compare-and-swap on "absent"), makes two API processes allocating at the
// same time pick different addresses.
package ipam

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultStaleAfter is how old a claim must be before it may be taken
// over when its holder turns out not to use the address (a create that
// failed after claiming, a process that died in between).
const DefaultStaleAfter = 30 * time.Second

// KV is the part of a JetStream key-value bucket the claims use.
type KV interface {
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
}

// inUseFunc reports whether holder really uses the claimed address.
type inUseFunc func(ctx context.Context, holder string) (bool, error)

type claims struct {
	kv    KV
	stale time.Duration
	now   func() time.Time
}

// claim takes key for owner and reports whether owner holds it now. A key
// held by another owner is taken over only when the claim is stale and
// inUse says the holder does not use it.
func (c *claims) claim(ctx context.Context, key, owner string, inUse inUseFunc) (bool, error) {
	for range 3 {
		_, err := c.kv.Create(ctx, key, []byte(owner))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, fmt.Errorf("claim %s: %w", key, err)
		}
		e, err := c.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // released meanwhile
		}
		if err != nil {
			return false, fmt.Errorf("claim %s: %w", key, err)
		}
		holder := string(e.Value())
		if holder == owner {
			return true, nil
		}
		if c.now().Sub(e.Created()) < c.stale {
			return false, nil
		}
		used, err := inUse(ctx, holder)
		if err != nil || used {
			return false, err
		}
		if _, err := c.kv.Update(ctx, key, []byte(owner), e.Revision()); err != nil {
			if isWrongSequence(err) {
				continue
			}
			return false, fmt.Errorf("claim %s: %w", key, err)
		}
		return true, nil
	}
	return false, nil
}

// release deletes key if owner holds it.
func (c *claims) release(ctx context.Context, key, owner string) error {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release %s: %w", key, err)
	}
	if string(e.Value()) != owner {
		return nil
	}
	if err := c.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !isWrongSequence(err) {
		return fmt.Errorf("release %s: %w", key, err)
	}
	return nil
}

func isWrongSequence(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
