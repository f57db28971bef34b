// Command otaport-c is the port plugin of otaport's C port: the C code of
// ports/c over the flash emulator, served to otarun over gRPC as the Go
// ports' plugins are. One program serves every board of the catalog: the
// board is OTAPORT_BOARD, or else the program's name, otaport-<board>-c
// (make build writes bin/otaport-<board>-c for each board).
package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/otaport/otaport/core/hal/plugin"
	"github.com/otaport/otaport/ports/all"
	"github.com/otaport/otaport/ports/cport"
	"github.com/otaport/otaport/ports/portkit"
)

// envBoard names the board when the program's name does not.
const envBoard = "OTAPORT_BOARD"

func main() {
	name := os.Getenv(envBoard)
	if name == "" {
		base := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
		if strings.HasPrefix(base, "otaport-") && strings.HasSuffix(base, "-c") {
			name = strings.TrimSuffix(strings.TrimPrefix(base, "otaport-"), "-c")
		}
	}
	e, ok := all.Lookup(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "otaport-c: board %q is not in the catalog: run as otaport-<board>-c or set %s (boards: %s)\n",
			name, envBoard, strings.Join(cport.Boards(), ", "))
		os.Exit(2)
	}
	p, err := cport.Open(e.Layout(), portkit.FromEnv(os.Getenv, slog.Default()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "otaport-c:", err)
		os.Exit(1)
	}
	plugin.Serve(p)
}
