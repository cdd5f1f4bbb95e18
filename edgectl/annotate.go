package edgectl

import "github.com/spf13/cobra"

// newAnnotateCmd is `edgectl annotate`: label's arguments, --overwrite
// rule, --selector and --dry-run, on metadata.annotations.
func newAnnotateCmd(o *options) *cobra.Command {
	return newMetaCmd(o, annotationsField, "Add, change or remove annotations of an object", `  edgectl annotate pod hello description='the demo pod'
  edgectl annotate deploy/web owner=ops --overwrite
  edgectl annotate pods -l app=hello checked=yes
  edgectl annotate pod hello description-`)
}
