// driver.go holds the hooks of the port that are written by hand. otagen created
// it once and never overwrites it: replace the flash emulator by the board's
// real flash driver here.

package nrf5340dk

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// openDevice opens the board's flash. The default is the flash emulator over
// the file named by OTAPORT_FLASH (default ./nrf5340-dk.flash), created
// erased when missing, so the port runs on a laptop.
func openDevice(l hal.Layout) (flash.Device, error) {
	path := os.Getenv("OTAPORT_FLASH")
	if path == "" {
		path = "./nrf5340-dk.flash"
	}
	dev, err := flash.OpenFile(path, l.Flash)
	if err != nil {
		return nil, fmt.Errorf("flash file %s (set OTAPORT_FLASH to choose another): %w", path, err)
	}
	return dev, nil
}

// options returns the simulated bootloader's options. Its verification keys
// are the PEM public keys in the files listed in OTAPORT_BOOT_KEY
// (comma-separated); with none, the bootloader checks hashes only (Open says
// so in the log). A key file that cannot be read is an error, not a silent fall
// back to hash-only checks.
func options() (boot.Options, error) {
	opts := boot.Options{Logger: slog.Default().With("board", "nrf5340-dk")}
	for _, file := range strings.Split(os.Getenv("OTAPORT_BOOT_KEY"), ",") {
		file = strings.TrimSpace(file)
		if file == "" {
			continue
		}
		pem, err := os.ReadFile(file)
		if err != nil {
			return boot.Options{}, fmt.Errorf("OTAPORT_BOOT_KEY: %w", err)
		}
		key, err := image.LoadPublicKey(pem)
		if err != nil {
			return boot.Options{}, fmt.Errorf("OTAPORT_BOOT_KEY: key file %s: %w", file, err)
		}
		opts.Keys = append(opts.Keys, key)
	}
	return opts, nil
}
