package edgectl

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/edgeorch/edgeorch/client"
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
		Short: "Store a WebAssembly module in the control plane's module store",
		Example: `  edgectl push hello.wasm --name hello:v1
  # then use it in a pod as image: hello:v1`,
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
	cmd.Flags().StringVar(&p.name, "name", "", "module name and optional tag (default tag latest)")
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
