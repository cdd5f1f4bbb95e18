package edgectl

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

// completionTimeout bounds the requests made for one completion: a shell
// must not hang on an unreachable control plane.
const completionTimeout = 2 * time.Second

func newCompletionCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the completion script for a shell. Kinds, object names (asked of the
control plane, which must answer within 2s), namespaces and contexts complete.`,
		Example: `  # bash, this shell; or write it to /etc/bash_completion.d/edgectl
  source <(edgectl completion bash)
  # zsh: a file named _edgectl in a directory of $fpath
  edgectl completion zsh > "${fpath[1]}/_edgectl"
  # fish
  edgectl completion fish > ~/.config/fish/completions/edgectl.fish
  # PowerShell
  edgectl completion powershell | Out-String | Invoke-Expression`,
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf(cmd, "give one shell: bash, zsh, fish or powershell")
			}
			root, out := cmd.Root(), o.streams.Out
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return usageErrorf(cmd, "unsupported shell %q: give bash, zsh, fish or powershell", args[0])
		},
	}
}

// registerCompletions attaches dynamic completions to the commands of root:
// kinds, then object names from the server, for the verbs that take them;
// namespaces for -n; contexts for --context; formats for -o of get.
func registerCompletions(root *cobra.Command, o *options) {
	// The completion command is ours; cobra's default one is not needed.
	root.CompletionOptions.DisableDefaultCmd = true
	for _, cmd := range root.Commands() {
		switch cmd.Name() {
		case "get", "describe", "delete", "label":
			cmd.ValidArgsFunction = o.completeKindsAndNames
		case "wait":
			cmd.ValidArgsFunction = o.completeTypeSlashName
		case "logs", "exec":
			cmd.ValidArgsFunction = o.completePodNames
		case "scale":
			cmd.ValidArgsFunction = o.completeTypeSlashName
		}
		if cmd.Name() == "get" {
			_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
				return []string{"wide", "json", "yaml", "name", "jsonpath=", "custom-columns=", "custom-columns-file="}, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
			})
		}
	}
	_ = root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return o.completeNames(cmd, manifests.Kind{Resource: "namespaces"}, "", toComplete, nil), cobra.ShellCompDirectiveNoFileComp
	})
	_ = root.RegisterFlagCompletionFunc("context", func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		c := &configCmdOptions{options: o}
		return c.completeContextNames(cmd, nil, toComplete)
	})
}

// kindNamesFor returns the plural resource names starting with toComplete
// (or whose singular or short name does).
func kindNamesFor(toComplete string) []string {
	l := strings.ToLower(toComplete)
	var out []string
	for _, k := range manifests.Kinds() {
		names := append([]string{k.Resource, k.Singular}, k.ShortNames...)
		if slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, l) }) {
			out = append(out, k.Resource)
		}
	}
	slices.Sort(out)
	return out
}

// completeKindsAndNames completes `KIND NAME...` and `KIND/NAME...`.
func (o *options) completeKindsAndNames(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		if strings.Contains(toComplete, "/") {
			return o.completeTypeSlashName(cmd, args, toComplete)
		}
		return kindNamesFor(toComplete), cobra.ShellCompDirectiveNoFileComp
	}
	if strings.Contains(args[0], "/") {
		return o.completeTypeSlashName(cmd, args, toComplete)
	}
	if strings.Contains(args[0], ",") {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	k, err := manifests.KindForResource(args[0])
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if cmd.Name() == "label" && len(args) > 1 {
		return nil, cobra.ShellCompDirectiveNoFileComp // labels come next
	}
	return o.completeNames(cmd, k, "", toComplete, args[1:]), cobra.ShellCompDirectiveNoFileComp
}

// completeTypeSlashName completes `KIND/NAME`: the kinds followed by "/",
// then the names of that kind.
func (o *options) completeTypeSlashName(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	kindPart, namePart, ok := strings.Cut(toComplete, "/")
	if !ok {
		var out []string
		for _, r := range kindNamesFor(toComplete) {
			k, _ := manifests.KindForResource(r)
			out = append(out, k.Singular+"/")
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
	k, err := manifests.KindForResource(kindPart)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return o.completeNames(cmd, k, kindPart+"/", namePart, args), cobra.ShellCompDirectiveNoFileComp
}

func (o *options) completePodNames(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveDefault
	}
	pods, _ := manifests.KindForResource("pods")
	return o.completeNames(cmd, pods, "", toComplete, nil), cobra.ShellCompDirectiveNoFileComp
}

// completeNames lists the names of objects of k starting with toComplete,
// prefixed with prefix, leaving out those already given. Any failure
// (no server, no permission, too slow) completes nothing.
func (o *options) completeNames(cmd *cobra.Command, k manifests.Kind, prefix, toComplete string, given []string) []string {
	if err := o.applyConfig(cmd.Root().PersistentFlags()); err != nil {
		return nil
	}
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, completionTimeout)
	defer cancel()
	cl, err := o.client(ctx)
	if err != nil {
		return nil
	}
	ns := ""
	if k.Namespaced {
		ns = o.listNamespace()
	}
	objs, _, err := cl.List(ctx, k.Resource, ns, "")
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, obj := range objs {
		name := obj.GetObjectMeta().Name
		if seen[name] || !strings.HasPrefix(name, toComplete) || slices.Contains(given, name) || slices.Contains(given, prefix+name) {
			continue
		}
		seen[name] = true
		out = append(out, prefix+name)
	}
	slices.Sort(out)
	return out
}
