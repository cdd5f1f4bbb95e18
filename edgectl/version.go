package edgectl

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"
)

type versionOptions struct {
	*options
	clientOnly bool
}

func newVersionCmd(o *options) *cobra.Command {
	v := &versionOptions{options: o}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client version and, when reachable, the server's",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf(cmd, "unexpected arguments %q", args)
			}
			return v.run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&v.clientOnly, "client", false, "print only the client version")
	return cmd
}

func (v *versionOptions) run(ctx context.Context) error {
	fmt.Fprintf(v.streams.Out, "Client Version: %s\n", Version)
	if v.clientOnly {
		return nil
	}
	cl, err := v.client(ctx)
	if err != nil {
		return err
	}
	nc := cl.Conn()
	api := "unavailable"
	if info, err := v.apiInfo(ctx); err == nil {
		api = info.Name + " " + info.Version
	}
	fmt.Fprintf(v.streams.Out, "Server Version: %s (NATS %s)\n", api, nc.ConnectedServerVersion())
	return nil
}

// apiInfo asks the API micro service for its name and version.
func (v *versionOptions) apiInfo(ctx context.Context) (micro.Info, error) {
	var info micro.Info
	subj, err := micro.ControlSubject(micro.InfoVerb, messaging.APIServiceName, "")
	if err != nil {
		return info, err
	}
	rctx, cancel := v.reqCtx(ctx)
	defer cancel()
	msg, err := v.nc.RequestWithContext(rctx, subj, nil)
	if err != nil {
		return info, fmt.Errorf("api info: %w", err)
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		return info, fmt.Errorf("decode api info: %w", err)
	}
	return info, nil
}
