// Command otaport-nrf52840-dk-swap is a port plugin for otarun's scripts
// only: the swap board of core/hal/haltest (MCUboot swap-move), which the
// catalog does not hold yet, served as a generated port serves its board.
// It lives under testdata so that nothing but the scripts builds it.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/core/hal/plugin"
	"github.com/otaport/otaport/ports/portkit"
)

func main() {
	l, ok := haltest.Layout("nrf52840-dk-swap")
	if !ok {
		fmt.Fprintln(os.Stderr, "otaport-nrf52840-dk-swap: core/hal/haltest has no nrf52840-dk-swap")
		os.Exit(1)
	}
	open := func(l hal.Layout, cfg portkit.Config) (flash.Device, error) {
		return portkit.EmulatedFlash(l, cfg.Flash)
	}
	p, err := portkit.Open(l, open, portkit.FromEnv(os.Getenv, slog.Default()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "otaport-nrf52840-dk-swap:", err)
		os.Exit(1)
	}
	plugin.Serve(p)
}
