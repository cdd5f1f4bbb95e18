package edgectl

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newNodeCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Manage node credentials (admin)",
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a node's credentials (a lost or stolen device)",
		Long: `Revoke every credential issued to the node: its connections are closed at
once and it can no longer connect. Its Node and pods stay (delete them with
edgectl delete if the device is gone for good). To bring the device back,
delete <data-dir>/node.creds on it and start edge-agent with a new
--join-token.`,
		Example: `  edgectl --creds edge-data/auth/admin.creds node revoke pump-7`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx, cancel := o.reqCtx(cmd.Context())
			defer cancel()
			res, err := c.RevokeNode(ctx, args[0])
			if err != nil {
				return err
			}
			printRevoked(o, "node/"+res.Node, res.Keys)
			return nil
		},
	}
	cmd.AddCommand(revoke)
	return cmd
}

// printRevoked says which keys of what (node/NAME, user/NAME) a revoke cut
// off, or that they already were.
func printRevoked(o *options, what string, keys []string) {
	if len(keys) == 0 {
		fmt.Fprintf(o.streams.Out, "%s credentials were already revoked\n", what)
		return
	}
	fmt.Fprintf(o.streams.Out, "%s revoked (%s)\n", what, strings.Join(keys, ", "))
}
