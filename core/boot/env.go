package boot

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// Environment variables of the emulated device. A port plugin inherits the
// host's environment (go-plugin passes it on), so otarun and tests choose the
// flash file and the bootloader's keys without flags on the plugin.
const (
	// EnvFlash names the flash image file of the emulated device.
	EnvFlash = "OTAPORT_FLASH"
	// EnvBootKey lists the PEM public keys (comma-separated files) the
	// simulated bootloader verifies images with.
	EnvBootKey = "OTAPORT_BOOT_KEY"
)

// EmulatedFlash opens the flash emulator over the file named by OTAPORT_FLASH,
// or defaultPath when it is unset; a missing file is created erased. It is
// the default of a generated port's driver.go, so the port runs on a laptop.
func EmulatedFlash(l hal.Layout, defaultPath string) (flash.Device, error) {
	path := os.Getenv(EnvFlash)
	if path == "" {
		path = defaultPath
	}
	dev, err := flash.OpenFile(path, l.Flash)
	if err != nil {
		return nil, fmt.Errorf("flash file %s (set %s to choose another): %w", path, EnvFlash, err)
	}
	return dev, nil
}

// EnvOptions returns the simulated bootloader's options for board: its
// verification keys are the PEM public keys in the files listed in
// OTAPORT_BOOT_KEY. With none the bootloader checks hashes only. A key file
// that cannot be read is an error, never a silent fall back to hash-only
// checks.
func EnvOptions(board string) (Options, error) {
	opts := Options{Logger: slog.Default().With("board", board)}
	for _, file := range strings.Split(os.Getenv(EnvBootKey), ",") {
		file = strings.TrimSpace(file)
		if file == "" {
			continue
		}
		pem, err := os.ReadFile(file)
		if err != nil {
			return Options{}, fmt.Errorf("%s: %w", EnvBootKey, err)
		}
		key, err := image.LoadPublicKey(pem)
		if err != nil {
			return Options{}, fmt.Errorf("%s: key file %s: %w", EnvBootKey, file, err)
		}
		opts.Keys = append(opts.Keys, key)
	}
	return opts, nil
}
