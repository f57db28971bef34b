// Command otaport-bench is the port plugin the install benchmark
// (bench/install.sh) runs: the rpi4-b port's geometry and bootloader with
// the SD card described up to 160 MiB instead of 64, so that the update
// slot takes the benchmark's 64 MiB image. The catalog's rpi4-b keeps its
// 31 MiB slots (and every test that opens its flash stays small); this
// board exists for the benchmark only, with the flash in the file named by
// OTAPORT_FLASH.
package main

import (
	"fmt"
	"os"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin"
	rpi4b "github.com/otaport/otaport/ports/rpi4-b"
)

// layout is rpi4-b with app and ota of 79 MiB each.
func layout() hal.Layout {
	l := rpi4b.Layout()
	l.Board = "rpi4-b-bench"
	l.Flash.Size = 160 << 20
	l.Flash.Sectors = []hal.SectorRun{{Count: int(l.Flash.Size / 512), Size: 512}}
	l.Partitions = []hal.Partition{
		{Name: hal.PartBootloader, Offset: 0, Size: 1 << 20},
		{Name: hal.PartParams, Offset: 1 << 20, Size: 1 << 20},
		{Name: hal.PartApp, Offset: 2 << 20, Size: 79 << 20},
		{Name: hal.PartOTA, Offset: 81 << 20, Size: 79 << 20},
	}
	return l
}

func main() {
	path := os.Getenv("OTAPORT_FLASH")
	if path == "" {
		path = "./rpi4-b-bench.flash"
	}
	dev, err := flash.OpenFile(path, layout().Flash)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otaport-bench:", err)
		os.Exit(1)
	}
	p, err := boot.NewPlatform(layout(), dev, boot.Options{CloseDevice: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "otaport-bench:", err)
		os.Exit(1)
	}
	plugin.Serve(p)
}
