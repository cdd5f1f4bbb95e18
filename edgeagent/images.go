package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/manifests"
)

// Image garbage collection: how often, and how long a freshly pulled image
// is kept before a pod's state records it.
const (
	imageGCInterval = time.Minute
	imageGCGrace    = 10 * time.Minute
)

// secretTypeDockerConfigJSON is the type of the pull secrets the agent uses.
const secretTypeDockerConfigJSON = "kubernetes.io/dockerconfigjson"

// imageStore is what the agent needs of its local image store (images.Store).
type imageStore interface {
	Pull(ctx context.Context, ref string, opts images.PullOptions) (images.Image, error)
	PullWasm(ctx context.Context, ref string, opts images.PullOptions) (images.WasmModule, error)
	GC(ctx context.Context, keep []string) (int64, error)
}

// pulledImages remembers images pulled recently, so that garbage collection
// does not remove one before the pod that pulled it records its digest.
type pulledImages struct {
	mu   sync.Mutex
	when map[string]time.Time // by digest "sha256:<hex>"
}

func (p *pulledImages) add(digest string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.when == nil {
		p.when = map[string]time.Time{}
	}
	p.when[digest] = time.Now()
}

func (p *pulledImages) recent() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for d, t := range p.when {
		if time.Since(t) > imageGCGrace {
			delete(p.when, d)
			continue
		}
		out = append(out, d)
	}
	return out
}

// imageSource lets the image store fetch images pushed to the control
// plane's object store (edgectl push).
type imageSource struct{ api API }

func (s imageSource) Resolve(ctx context.Context, ref string) (string, error) {
	d, err := s.api.ResolveImage(ctx, ref)
	if client.IsNotFound(err) {
		return "", fmt.Errorf("resolve %s in the control plane: %w", ref, images.ErrNotFound)
	}
	return d, err
}

func (s imageSource) Fetch(ctx context.Context, digest string, w io.Writer) error {
	return s.api.FetchBlob(ctx, digest, w)
}

// blobOpener is the resumable part of the control plane API
// (client.Client.OpenBlobAt).
type blobOpener interface {
	OpenBlobAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error)
}

// OpenBlobAt makes imageSource an images.ResumableSource: a blob cut by a
// bad link continues where it stopped. An API that cannot resume starts
// over at 0.
func (s imageSource) OpenBlobAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error) {
	if o, ok := s.api.(blobOpener); ok {
		return o.OpenBlobAt(ctx, digest, offset, token)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.api.FetchBlob(ctx, digest, pw)) }()
	return pr, 0, nil
}

// OpenBlobAt opens a blob of the control plane's store at an offset.
func (a *connAPI) OpenBlobAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error) {
	if err := a.offline(); err != nil {
		return nil, 0, err
	}
	return a.c.OpenBlobAt(ctx, digest, offset, token)
}

// logResume logs a blob download that continued a partial one.
func (a *Agent) logResume(digest string, offset, size int64) {
	a.log.Info(fmt.Sprintf("resumed %s at %d of %d", digest, offset, size), "digest", digest, "offset", offset, "size", size)
}

// ociImage pulls a container's image under its pull policy and returns the
// unpacked image directory. The manifest digest is remembered as the
// container's image ID.
func (w *podWorker) ociImage(ctx context.Context, pod *manifests.Pod, spec *manifests.Container, c *ctr) (string, error) {
	if w.a.imgs == nil {
		return "", errors.New("no image store on this node")
	}
	opts := images.PullOptions{Policy: images.PullPolicy(spec.ImagePullPolicy), DockerConfigs: w.pullSecrets(ctx, pod), OnResume: w.a.logResume}
	if w.a.nc.IsConnected() {
		opts.Source = imageSource{api: w.a.api}
	}
	img, err := w.a.imgs.Pull(ctx, spec.Image, opts)
	if errors.Is(err, images.ErrUnreachable) && c.digest != "" && c.image == spec.Image && opts.Policy != images.PullNever {
		// Edge autonomy: with the registry out of reach (policy Always),
		// the container starts again from the image it last ran, when the
		// node still has it.
		local, lerr := w.a.imgs.Pull(ctx, spec.Image, images.PullOptions{Policy: images.PullIfNotPresent})
		if lerr == nil && strings.TrimPrefix(local.Digest, "sha256:") == c.digest {
			w.a.log.Info("registry unreachable, using the local image", "pod", pod.Namespace+"/"+pod.Name, "image", spec.Image, "digest", local.Digest)
			img, err = local, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("failed to pull image %q: %w", spec.Image, err)
	}
	w.a.pulled.add(img.Digest)
	hex := strings.TrimPrefix(img.Digest, "sha256:")
	if c.digest != hex {
		c.digest = hex
		w.dirty = true
	}
	return img.Dir, nil
}

// pullSecrets returns the .dockerconfigjson documents of the pod's image
// pull secrets.
func (w *podWorker) pullSecrets(ctx context.Context, pod *manifests.Pod) [][]byte {
	var out [][]byte
	src := &podSources{w: w}
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := src.Secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			// As the kubelet: a missing pull secret is not fatal, the pull
			// goes on without it (and may then be refused).
			w.a.log.Warn("image pull secret", "pod", pod.Namespace+"/"+pod.Name, "secret", ref.Name, "err", err)
			continue
		}
		if s.Type != secretTypeDockerConfigJSON {
			continue
		}
		if b, ok := s.Data[".dockerconfigjson"]; ok {
			out = append(out, b)
		} else if str, ok := s.StringData[".dockerconfigjson"]; ok {
			out = append(out, []byte(str))
		}
	}
	return out
}

// imageGCLoop removes unused images at start and then every interval.
func (a *Agent) imageGCLoop(ctx context.Context) {
	if a.imgs == nil {
		return
	}
	for {
		a.collectImages(ctx)
		if !waitFor(ctx, imageGCInterval) {
			return
		}
	}
}

// collectImages removes the images no pod in the local state uses.
func (a *Agent) collectImages(ctx context.Context) {
	keep := a.pulled.recent()
	recs, err := a.db.Pods()
	if err != nil {
		a.log.Warn("image gc: read pods", "err", err)
		return
	}
	for _, rec := range recs {
		for _, c := range rec.Containers {
			if c.Digest != "" {
				keep = append(keep, "sha256:"+c.Digest)
			}
		}
	}
	a.mu.Lock()
	for _, w := range a.workers {
		w.mu.Lock()
		for _, c := range w.rec.Containers {
			if c.Digest != "" {
				keep = append(keep, "sha256:"+c.Digest)
			}
		}
		w.mu.Unlock()
	}
	a.mu.Unlock()
	freed, err := a.imgs.GC(ctx, keep)
	if err != nil {
		a.log.Warn("image gc", "err", err)
		return
	}
	if freed > 0 {
		a.log.Info("image gc", "freedBytes", freed)
	}
}
