package edgectl

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newTokenCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage join tokens (admin)",
	}
	var ttl time.Duration
	var node string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a single-use join token for a new device",
		Long: `Create a single-use join token. A device joins with it once:
  edge-agent --server URL --node-name NAME --join-token TOKEN
The agent makes its own key pair, gets its node credentials and keeps them in
<data-dir>/node.creds. The token is printed on stdout; the control plane keeps
only a hash of its secret. Needs admin credentials (--creds).`,
		Example: `  edgectl --creds edge-data/auth/admin.creds token create --ttl 30m
  edgectl token create --node pump-7     # only node pump-7 may join with it`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl <= 0 {
				return usageErrorf(cmd, "--ttl %s: must be positive", ttl)
			}
			c, err := o.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx, cancel := o.reqCtx(cmd.Context())
			defer cancel()
			res, err := c.CreateJoinToken(ctx, ttl, node)
			if err != nil {
				return err
			}
			fmt.Fprintln(o.streams.Out, res.Token)
			fmt.Fprintf(o.streams.ErrOut, "join token %s expires %s; it can be used once\n", res.ID, res.Expires)
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token may be used")
	create.Flags().StringVar(&node, "node", "", "the only node name that may join with the token")
	cmd.AddCommand(create)
	return cmd
}
