package edgectl

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

func newAuthCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Inspect authorization (RBAC)",
	}
	cmd.AddCommand(newCanICmd(o), newWhoAmICmd(o))
	return cmd
}

// credsRole is the role of --creds ("" without creds: authentication off,
// or the admin of a --dev control plane).
func (o *options) credsRole() (auth.Role, error) {
	if o.creds == "" {
		return "", nil
	}
	c, err := auth.ReadCreds(o.creds)
	if err != nil {
		return "", fmt.Errorf("--creds: %w", err)
	}
	return c.Role(), nil
}

// readonlyVerbs are what readonly credentials may do (through the API
// or the watch subjects), on every resource.
var readonlyVerbs = []string{"get", "list", "watch"}

func newCanICmd(o *options) *cobra.Command {
	var list, quiet bool
	var as string
	var asGroups []string
	var subresource string
	cmd := &cobra.Command{
		Use:   "can-i VERB RESOURCE [NAME] | --list",
		Short: "Check whether an action is allowed",
		Long: `Ask the control plane whether the caller (or, for an admin, --as USER) may do
VERB on RESOURCE (e.g. pods, deployments.apps, pods/log) in the namespace
(-n; -A: in every namespace). Prints yes or no; the exit code is 0 for yes,
1 for no. With --list, prints the rules that apply in the namespace.
Admin credentials may do everything; readonly credentials may get, list and
watch; RBAC users as their Roles and bindings say (docs/rbac.md).`,
		Example: `  edgectl auth can-i create deployments -n team-a
  edgectl auth can-i get pods/log
  edgectl auth can-i --list -n team-a
  edgectl auth can-i delete secrets --as alice      # admin only`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if list && len(args) > 0 {
				return usageErrorf(cmd, "--list takes no arguments")
			}
			if !list && (len(args) < 2 || len(args) > 3) {
				return usageErrorf(cmd, "want VERB RESOURCE [NAME], or --list")
			}
			req := client.AccessReviewRequest{User: as, Groups: asGroups, List: list, Subresource: subresource, Namespace: o.listNamespace()}
			if !list {
				req.Verb, req.Resource = args[0], args[1]
				if len(args) == 3 {
					req.Name = args[2]
				} else if res, name, ok := strings.Cut(args[1], "/"); ok && !strings.Contains(name, "/") && isNameLike(name) {
					// kubectl's TYPE/NAME, unless it is a subresource
					// (pods/log): names with a dot or digit, or a
					// subresource the API knows, decide.
					req.Resource, req.Name = res, name
				}
			}
			if len(asGroups) > 0 && as == "" {
				return usageErrorf(cmd, "--as-group needs --as")
			}
			role, err := o.credsRole()
			if err != nil {
				return err
			}
			var res client.AccessReviewResult
			if role == auth.RoleReadonly && as == "" {
				// Readonly credentials cannot reach the review verb;
				// what they may do is fixed.
				res.Allowed = slices.Contains(readonlyVerbs, req.Verb)
				res.Rules = []string{"*.*\t[]\t[" + strings.Join(readonlyVerbs, " ") + "]"}
			} else {
				c, err := o.client(cmd.Context())
				if err != nil {
					return err
				}
				ctx, cancel := o.reqCtx(cmd.Context())
				defer cancel()
				if res, err = c.AccessReview(ctx, req); err != nil {
					return err
				}
			}
			if list {
				tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "Resources\tResource Names\tVerbs")
				for _, r := range res.Rules {
					fmt.Fprintln(tw, r)
				}
				return tw.Flush()
			}
			if !quiet {
				if res.Allowed {
					fmt.Fprintln(o.streams.Out, "yes")
				} else {
					fmt.Fprintln(o.streams.Out, "no")
				}
			}
			if !res.Allowed {
				return &codedError{code: 1, err: errReported}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&list, "list", false, "list the rules that apply in the namespace")
	f.BoolVarP(&quiet, "quiet", "q", false, "print nothing; only the exit code says")
	f.StringVar(&as, "as", "", "ask about this RBAC user (admin credentials only)")
	f.StringArrayVar(&asGroups, "as-group", nil, "with --as: these groups instead of the user's recorded ones")
	f.StringVar(&subresource, "subresource", "", "a subresource, e.g. log or exec")
	return cmd
}

// isNameLike tells kubectl's TYPE/NAME from RESOURCE/SUBRESOURCE: the
// subresources the API knows are not names.
func isNameLike(s string) bool {
	switch s {
	case "log", "exec", "status", "scale", "portforward", "attach", "*":
		return false
	}
	return true
}

func newWhoAmICmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who the control plane takes you for",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			role, err := o.credsRole()
			if err != nil {
				return err
			}
			var who client.WhoAmIResult
			if role == auth.RoleReadonly {
				who = client.WhoAmIResult{User: string(auth.RoleReadonly), Role: string(auth.RoleReadonly)}
			} else {
				c, err := o.client(cmd.Context())
				if err != nil {
					return err
				}
				ctx, cancel := o.reqCtx(cmd.Context())
				defer cancel()
				if who, err = c.WhoAmI(ctx); err != nil {
					return err
				}
			}
			tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "ATTRIBUTE\tVALUE")
			fmt.Fprintf(tw, "Username\t%s\n", who.User)
			if len(who.Groups) > 0 {
				fmt.Fprintf(tw, "Groups\t[%s]\n", strings.Join(who.Groups, " "))
			}
			fmt.Fprintf(tw, "Role\t%s\n", who.Role)
			return tw.Flush()
		},
	}
}
