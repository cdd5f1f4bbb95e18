package edgectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

type execOptions struct {
	*options
	container string
	stdin     bool
	tty       bool
}

func newExecCmd(o *options) *cobra.Command {
	e := &execOptions{options: o}
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [args...]",
		Short: "Run a command in a container of a pod",
		Example: `  edgectl exec web -- ls /
  edgectl exec -it web -c sidecar -- sh`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf(cmd, "expected a POD argument and a command: exec POD -- COMMAND [args...]")
			}
			if dash := cmd.ArgsLenAtDash(); dash > 1 {
				return usageErrorf(cmd, "exactly one POD argument may come before --, got %d", dash)
			}
			name, command := args[0], args[1:]
			if kind, n, ok := strings.Cut(name, "/"); ok {
				k, err := manifests.KindForResource(kind)
				if err != nil || k.Kind != "Pod" {
					return usageErrorf(cmd, "exec supports pods only, not %q", kind)
				}
				name = n
			}
			if len(command) == 0 {
				return usageErrorf(cmd, "you must specify at least one command for the container")
			}
			if e.tty && !isTerminal(e.streams.In) {
				return errors.New("Unable to use a TTY - input is not a terminal or the right kind of file")
			}
			return e.run(cmd.Context(), name, command)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&e.container, "container", "c", "", "container name (default: the only or first container)")
	f.BoolVarP(&e.stdin, "stdin", "i", false, "pass stdin to the command")
	f.BoolVarP(&e.tty, "tty", "t", false, "stdin is a TTY (output arrives on stdout only)")
	return cmd
}

// isTerminal reports whether r is a character device (a terminal).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// exitCodeError ends edgectl with the exit code of the remote command.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.code)
}

func (e *execOptions) run(ctx context.Context, name string, command []string) error {
	cl, err := e.client(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := e.reqCtx(ctx)
	obj, err := cl.Get(rctx, "pods", e.namespace, name)
	cancel()
	if err != nil {
		return err
	}
	pod, ok := obj.(*manifests.Pod)
	if !ok {
		return fmt.Errorf("pods %q: got a %T", name, obj)
	}
	if p := pod.Status.Phase; p == manifests.PodSucceeded || p == manifests.PodFailed {
		return fmt.Errorf("cannot exec into a container in a completed pod; current phase is %s", p)
	}
	if pod.Spec.NodeName == "" {
		return fmt.Errorf("pod %q is not scheduled to a node yet", name)
	}
	lo := &logsOptions{options: e.options, container: e.container}
	container, err := lo.pickContainer(pod)
	if err != nil {
		return err
	}
	req := client.ExecRequest{
		Namespace: pod.Namespace, Pod: pod.Name, Container: container,
		Command: command, Stdin: e.stdin, TTY: e.tty,
	}
	if e.tty && e.stdin {
		// Keys go to the remote terminal as typed (Ctrl-C included).
		if f, ok := e.streams.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			old, err := term.MakeRaw(int(f.Fd()))
			if err != nil {
				return fmt.Errorf("exec: set the terminal to raw mode: %w", err)
			}
			defer term.Restore(int(f.Fd()), old)
		}
	}
	code, err := cl.Exec(ctx, pod.Spec.NodeName, req, client.ExecStreams{
		Stdin: e.streams.In, Stdout: e.streams.Out, Stderr: e.streams.ErrOut,
	})
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitCodeError{code: code}
	}
	return nil
}
