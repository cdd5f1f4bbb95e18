package edgeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

// Prepull bounds: one pull at a time per request, and how long a
// prefetched image is kept by image garbage collection before a pod uses
// it.
const (
	prepullTimeout = 30 * time.Minute
	prepullHold    = 24 * time.Hour
)

// servePrepull answers prepull requests for this node.
func (a *Agent) servePrepull(ctx context.Context) (func(), error) {
	subj := messaging.NodeSubject(a.cfg.NodeName, messaging.NodeVerbPrepull)
	sub, err := a.nc.Subscribe(subj, func(m *nats.Msg) {
		go a.handlePrepull(ctx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("serve prepull on %s: %w", subj, err)
	}
	return func() { sub.Unsubscribe() }, nil
}

func (a *Agent) handlePrepull(ctx context.Context, m *nats.Msg) {
	var reply client.PrepullReply
	var req client.PrepullRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply.Error = fmt.Sprintf("prepull: decode request: %v", err)
	} else {
		ctx, cancel := context.WithTimeout(ctx, prepullTimeout)
		digest, err := a.prepull(ctx, req)
		cancel()
		if err != nil {
			reply.Error = err.Error()
			a.log.Warn("prepull failed", "image", req.Image, "runtime", req.Runtime, "err", err)
		} else {
			reply.Digest = digest
			a.log.Info("prepulled", "image", req.Image, "runtime", req.Runtime, "digest", digest)
		}
	}
	raw, _ := json.Marshal(reply)
	if err := m.Respond(raw); err != nil {
		a.log.Warn("prepull reply", "err", err)
	}
}

// prepull fetches req.Image the way a pod's container would get it, and
// returns its digest (sha256:<hex>).
func (a *Agent) prepull(ctx context.Context, req client.PrepullRequest) (string, error) {
	runtime := req.Runtime
	if runtime == "" {
		runtime = manifests.RuntimeWasm
	}
	if req.Image == "" {
		return "", errors.New("prepull: no image given")
	}
	if runtime != manifests.RuntimeWasm && runtime != manifests.RuntimeOCI {
		return "", fmt.Errorf("prepull: unknown runtime %q (want wasm or oci)", runtime)
	}
	if a.cfg.Runtimes[runtime] == nil {
		return "", fmt.Errorf("prepull: node has no %s runtime", runtime)
	}
	if a.cfg.PassImages {
		return "", errors.New("prepull: this node's runtime fetches its own images")
	}
	if runtime == manifests.RuntimeWasm && !images.IsRegistryRef(req.Image) {
		// A module pushed to the control plane: the module cache.
		hex, err := a.api.ResolveModule(ctx, req.Image)
		if err != nil {
			return "", fmt.Errorf("resolve %s: %w", req.Image, err)
		}
		if _, err := a.mods.ensure(ctx, hex); err != nil {
			return "", err
		}
		a.mods.resolved(req.Image, hex)
		return "sha256:" + hex, nil
	}
	if a.imgs == nil {
		return "", errors.New("prepull: no image store on this node")
	}
	opts := images.PullOptions{Policy: images.PullAlways}
	var digest string
	if runtime == manifests.RuntimeWasm {
		mod, err := a.imgs.PullWasm(ctx, req.Image, opts)
		if err != nil {
			return "", fmt.Errorf("pull wasm module %q: %w", req.Image, err)
		}
		digest = mod.Digest
	} else {
		if a.nc.IsConnected() {
			opts.Source = imageSource{api: a.api}
		}
		img, err := a.imgs.Pull(ctx, req.Image, opts)
		if err != nil {
			return "", fmt.Errorf("pull image %q: %w", req.Image, err)
		}
		digest = img.Digest
	}
	a.pulled.hold(digest, prepullHold)
	if !strings.HasPrefix(digest, "sha256:") {
		digest = "sha256:" + digest
	}
	return digest, nil
}

// hold keeps digest from image garbage collection for d (plus the usual
// grace), long enough for the rollout a prepull prepares.
func (p *pulledImages) hold(digest string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.when == nil {
		p.when = map[string]time.Time{}
	}
	p.when[digest] = time.Now().Add(d)
}
