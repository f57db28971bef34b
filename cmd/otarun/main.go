// Command otarun is the generic core of otaport on a device: it loads a port
// plugin and runs the upgrade agent, or one of the local subcommands (info,
// conformance, install, boot, status, confirm).
//
//	otarun --plugin bin/otaport-<board> [command] [flags]
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/otaport/otaport/cmd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is otarun with its arguments and streams; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, newRoot(), args, stdout, stderr)
}
