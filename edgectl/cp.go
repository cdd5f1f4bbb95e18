package edgectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

type cpOptions struct {
	*options
	container string
}

func newCpCmd(o *options) *cobra.Command {
	c := &cpOptions{options: o}
	cmd := &cobra.Command{
		Use:   "cp SRC DEST",
		Short: "Copy files and directories to and from containers, through NATS",
		Long: `Copy files and directories to and from a container. One of SRC and DEST is a
path in a pod, written [NAMESPACE/]POD:PATH; the other is a local path. The
agent reads and writes the container's files itself (no tar in the image):
the root filesystem of an OCI container, only the volumes of a wasm container.
A copy onto an existing directory goes into it; otherwise it takes the name
of DEST. Use ./ before a local path that holds a colon.`,
		Example: `  edgectl cp ./config.yaml web:/etc/app/config.yaml
  edgectl cp -c sidecar web:/var/log/app ./logs
  edgectl cp other-ns/web:/data/dump.db /tmp/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageErrorf(cmd, "expected SRC and DEST, one of them [NAMESPACE/]POD:PATH")
			}
			src, srcRemote := splitRemote(args[0])
			dst, dstRemote := splitRemote(args[1])
			switch {
			case srcRemote && dstRemote:
				return usageErrorf(cmd, "copying between two pods is not supported; one of SRC and DEST must be local")
			case !srcRemote && !dstRemote:
				return usageErrorf(cmd, "one of SRC and DEST must be a pod path, [NAMESPACE/]POD:PATH")
			case srcRemote:
				return c.download(cmd.Context(), src, args[1])
			default:
				return c.upload(cmd.Context(), args[0], dst)
			}
		},
	}
	cmd.Flags().StringVarP(&c.container, "container", "c", "", "container name (default: the first container)")
	return cmd
}

// remotePath is [NAMESPACE/]POD:PATH.
type remotePath struct {
	namespace, pod, path string
}

// splitRemote reads [NAMESPACE/]POD:PATH. A local path is one without a
// colon, or starting with "/", "." or "~".
func splitRemote(arg string) (remotePath, bool) {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") || strings.HasPrefix(arg, "~") {
		return remotePath{}, false
	}
	pod, p, ok := strings.Cut(arg, ":")
	if !ok || pod == "" {
		return remotePath{}, false
	}
	r := remotePath{pod: pod, path: p}
	if ns, name, ok := strings.Cut(pod, "/"); ok {
		r.namespace, r.pod = ns, name
	}
	return r, true
}

// target finds the pod's node and the container.
func (c *cpOptions) target(ctx context.Context, r remotePath) (*client.Client, *manifests.Pod, string, error) {
	if r.path == "" {
		return nil, nil, "", fmt.Errorf("%s: a path in the container is required (POD:PATH)", r.pod)
	}
	cl, err := c.client(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	ns := c.namespace
	if r.namespace != "" {
		ns = r.namespace
	}
	rctx, cancel := c.reqCtx(ctx)
	obj, err := cl.Get(rctx, "pods", ns, r.pod)
	cancel()
	if err != nil {
		return nil, nil, "", err
	}
	pod, ok := obj.(*manifests.Pod)
	if !ok {
		return nil, nil, "", fmt.Errorf("pods %q: got a %T", r.pod, obj)
	}
	if pod.Spec.NodeName == "" {
		return nil, nil, "", fmt.Errorf("pod %q is not scheduled to a node yet", r.pod)
	}
	lo := &logsOptions{options: c.options, container: c.container}
	container, err := lo.pickContainer(pod)
	if err != nil {
		return nil, nil, "", err
	}
	return cl, pod, container, nil
}

func (c *cpOptions) upload(ctx context.Context, local string, r remotePath) error {
	abs, err := filepath.Abs(local)
	if err != nil {
		return fmt.Errorf("cp: %w", err)
	}
	if _, err := os.Lstat(abs); err != nil {
		return fmt.Errorf("cp: %s: %w", local, errors.Unwrap(err))
	}
	cl, pod, container, err := c.target(ctx, r)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(filepath.Dir(abs))
	if err != nil {
		return fmt.Errorf("cp: %w", err)
	}
	defer root.Close()
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		pw.CloseWithError(client.WriteTar(pw, root, filepath.Base(abs), filepath.Base(abs), client.MaxCopyBytes))
	}()
	return cl.CopyToPod(ctx, pod.Spec.NodeName, client.CopyRequest{
		Namespace: pod.Namespace, Pod: pod.Name, Container: container, Path: r.path,
	}, pr)
}

func (c *cpOptions) download(ctx context.Context, r remotePath, local string) error {
	abs, err := filepath.Abs(local)
	if err != nil {
		return fmt.Errorf("cp: %w", err)
	}
	// Into an existing directory, else under the name of local in its
	// directory, which must exist.
	dir, top := abs, ""
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		dir, top = filepath.Dir(abs), filepath.Base(abs)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("cp: local directory %s does not exist", dir)
		}
	}
	cl, pod, container, err := c.target(ctx, r)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("cp: %w", err)
	}
	defer root.Close()
	pr, pw := io.Pipe()
	extracted := make(chan error, 1)
	go func() {
		skipped, err := client.ExtractTar(pr, root, ".", top, client.ExtractOptions{Limit: client.MaxCopyBytes})
		for _, s := range skipped {
			fmt.Fprintf(c.streams.ErrOut, "warning: skipping %s\n", s)
		}
		if err != nil {
			pr.CloseWithError(err)
		} else {
			io.Copy(io.Discard, pr)
		}
		extracted <- err
	}()
	err = cl.CopyFromPod(ctx, pod.Spec.NodeName, client.CopyRequest{
		Namespace: pod.Namespace, Pod: pod.Name, Container: container, Path: r.path,
	}, client.PipeCloser{PipeWriter: pw})
	pw.CloseWithError(err)
	xerr := <-extracted
	switch {
	case err != nil:
		return err // holds the extraction's error, if that came first
	case xerr != nil:
		return fmt.Errorf("cp: extract into %s: %w", dir, xerr)
	}
	return nil
}
