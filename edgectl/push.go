package edgectl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
)

type pushOptions struct {
	*options
	name string
}

func newPushCmd(o *options) *cobra.Command {
	p := &pushOptions{options: o}
	cmd := &cobra.Command{
		Use:   "push FILE --name NAME[:TAG]",
		Short: "Store a WebAssembly module or an OCI image in the control plane's store",
		Long: `Store a WebAssembly module (.wasm) or a container image in the control plane's
store, from which agents pull it without a registry. An image is given as a
docker save tarball, an OCI image layout tarball or an OCI image layout
directory.`,
		Example: `  edgectl push hello.wasm --name hello:v1
  # then use it in a pod as image: hello:v1
  docker save busybox:1.36 -o busybox.tar
  edgectl push busybox.tar --name busybox:v1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf(cmd, "expected exactly one FILE argument, got %d", len(args))
			}
			if p.name == "" {
				return usageErrorf(cmd, "--name NAME[:TAG] is required")
			}
			ref, err := client.ParseModuleRef(p.name)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			if ref.Digest != "" {
				return usageErrorf(cmd, "--name takes NAME[:TAG], not a digest")
			}
			return p.run(cmd.Context(), args[0], ref.Name+":"+ref.Tag)
		},
	}
	cmd.Flags().StringVar(&p.name, "name", "", "module or image name and optional tag (default tag latest)")
	return cmd
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (p *pushOptions) run(ctx context.Context, file, ref string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("push %s: %w", file, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("push %s: %w", file, err)
	}
	magic := make([]byte, 4)
	n, _ := io.ReadFull(f, magic)
	if fi.IsDir() || !bytes.Equal(magic[:n], []byte("\x00asm")) {
		f.Close()
		return p.pushImage(ctx, file, ref, fi)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("push %s: %w", file, err)
	}
	cl, err := p.client(ctx)
	if err != nil {
		return err
	}
	cr := &countingReader{r: f}
	digest, err := cl.PushModule(ctx, ref, cr)
	if err != nil {
		return err
	}
	fmt.Fprintf(p.streams.Out, "pushed %s sha256:%s (%d bytes)\n", ref, digest, cr.n)
	return nil
}

// pushImage pushes an image archive (docker save or OCI layout).
func (p *pushOptions) pushImage(ctx context.Context, file, ref string, fi os.FileInfo) error {
	img, cleanup, err := images.ReadArchive(ctx, file)
	if errors.Is(err, images.ErrNotArchive) {
		return fmt.Errorf("push %s: neither a WebAssembly module (\\0asm) nor an image archive (docker save tarball, OCI image layout)", file)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", file, err)
	}
	defer cleanup()
	cl, err := p.client(ctx)
	if err != nil {
		return err
	}
	digest, err := cl.PushImage(ctx, ref, img)
	if err != nil {
		return err
	}
	size := fi.Size()
	if fi.IsDir() {
		size = imageSize(img)
	}
	fmt.Fprintf(p.streams.Out, "pushed %s %s (%d bytes, image)\n", ref, digest, size)
	return nil
}

// imageSize is the size of an image's manifest, config and layers.
func imageSize(img v1.Image) int64 {
	var n int64
	if m, err := img.RawManifest(); err == nil {
		n += int64(len(m))
	}
	if m, err := img.Manifest(); err == nil {
		n += m.Config.Size
		for _, l := range m.Layers {
			n += l.Size
		}
	}
	return n
}
