package fake

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/edgeorch/edgeorch/runtime"
)

var _ runtime.Execer = (*Runtime)(nil)

// Exec runs a built-in command in a running container: "true" (0), "false"
// (1), "exit N" (N), "echo ARGS..." (prints them, 0); anything else is 127
// with "command not found" on stderr, as a shell would.
func (r *Runtime) Exec(ctx context.Context, containerID string, req runtime.ExecRequest) (int, error) {
	c, err := r.container(containerID)
	if err != nil {
		return 0, fmt.Errorf("exec: %w", err)
	}
	if st := c.status().State; st != runtime.StateRunning {
		return 0, fmt.Errorf("exec in container %s: %w: container is %s", containerID, runtime.ErrState, st)
	}
	if len(req.Cmd) == 0 {
		return 0, fmt.Errorf("exec in container %s: %w: empty command", containerID, runtime.ErrInvalid)
	}
	switch req.Cmd[0] {
	case "true":
		return 0, nil
	case "false":
		return 1, nil
	case "exit":
		if len(req.Cmd) != 2 {
			return 2, nil
		}
		n, err := strconv.Atoi(req.Cmd[1])
		if err != nil {
			return 2, nil
		}
		return n, nil
	case "echo":
		if req.Stdout != nil {
			if _, err := fmt.Fprintln(req.Stdout, strings.Join(req.Cmd[1:], " ")); err != nil {
				return 0, fmt.Errorf("exec in container %s: write output: %w", containerID, err)
			}
		}
		return 0, nil
	}
	if req.Stderr != nil {
		fmt.Fprintf(req.Stderr, "%s: command not found\n", req.Cmd[0])
	}
	return 127, nil
}
