// Command otaserve is otaport's cloud side: `otaserve run` serves the device
// registry, firmware, campaigns and the MQTT broker (package fleet); the
// other subcommands are a CLI over its REST API for operators and scripts.
package main

import (
	"context"
	"io"
	"os"

	"github.com/otaport/otaport/cmd/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status (0 ok, 1
// failure, 2 usage).
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Run(context.Background(), newRoot(), args, stdout, stderr)
}
