// Command edgectl is the operator's command line for the edge orchestrator.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgeorch/edgeorch/edgectl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := edgectl.Run(ctx, os.Args[1:], edgectl.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
