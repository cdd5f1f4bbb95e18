package edgectl

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newUserCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage RBAC users' credentials (admin)",
	}
	var groups []string
	var ttl time.Duration
	var out string
	create := &cobra.Command{
		Use:   "create NAME [--group G]... [--ttl D] [--creds-file FILE]",
		Short: "Issue credentials for an RBAC user",
		Long: `Issue NATS credentials for the RBAC user NAME, in the groups given. With
them edgectl sends every request on the user's own subjects, and the control
plane allows what the Roles and ClusterRoles bound to the user or its groups
allow (docs/rbac.md). The creds are printed on stdout, or written (0600) to
--creds-file. Creating an existing user issues another key and replaces the
user's groups. Needs admin credentials (--creds).`,
		Example: `  edgectl user create alice --group ops --ttl 720h --creds-file alice.creds
  # then apply a RoleBinding or ClusterRoleBinding naming User alice or Group ops
  edgectl --creds alice.creds auth can-i create deployments -n team-a`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < 0 {
				return usageErrorf(cmd, "--ttl %s: must not be negative", ttl)
			}
			c, err := o.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx, cancel := o.reqCtx(cmd.Context())
			defer cancel()
			res, err := c.CreateUser(ctx, args[0], groups, ttl)
			if err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, []byte(res.Creds), 0o600); err != nil {
					return fmt.Errorf("write creds of user %s: %w", res.Name, err)
				}
			} else {
				fmt.Fprint(o.streams.Out, res.Creds)
			}
			expires := "never"
			if res.Expires != "" {
				expires = res.Expires
			}
			fmt.Fprintf(o.streams.ErrOut, "user/%s credentials issued (groups: %s; expires %s)\n", res.Name, strings.Join(res.Groups, ","), expires)
			return nil
		},
	}
	create.Flags().StringArrayVar(&groups, "group", nil, "a group of the user (repeat for several)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "how long the credentials last (0: no expiry)")
	create.Flags().StringVar(&out, "creds-file", "", "write the creds to this file (0600) instead of stdout")
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke every credential issued to an RBAC user",
		Long: `Revoke every credential issued to the user: its connections are closed at
once and it can no longer connect (the mechanism of node revoke). Its
bindings stay; a new user create issues fresh credentials.`,
		Example: `  edgectl user revoke alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx, cancel := o.reqCtx(cmd.Context())
			defer cancel()
			res, err := c.RevokeUser(ctx, args[0])
			if err != nil {
				return err
			}
			printRevoked(o, "user/"+res.Name, res.Keys)
			return nil
		},
	}
	cmd.AddCommand(create, revoke)
	return cmd
}
