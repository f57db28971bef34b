// Command otagen validates board descriptions and generates the ports of
// otaport from them.
//
//	otagen [-o DIR] [--board NAME] [--force] FILE.yaml   generate ports/<name>/ for each board
//	otagen --module PATH [-o DIR] [--replace DIR] [--board NAME] FILE.yaml
//	                                           generate one board as its own Go module in DIR
//	otagen validate FILE.yaml                  check the file only
//	otagen list [--json] FILE.yaml             print the catalog
//
// docs/cli.md has the whole reference. Everything is generated in memory before anything is written, so an
// invalid file leaves the output untouched. The work is in package portgen;
// this is flags and messages.
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

// run is otagen with its arguments and streams; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Run(context.Background(), newRoot(), args, stdout, stderr)
}
