// Package portkit is what every port shares, written once: how a port is
// opened over its board's flash, the configuration a plugin's main passes in,
// and the entry of a catalog. A port's generated code is its board's layout
// and a call to Open; its driver.go chooses the flash.
//
// Nothing here reads the environment: a plugin's main does, with FromEnv,
// and passes the result in. The flash logic and the simulated bootloader are
// core/boot's; this package only wires a layout and a device to them.
package portkit

import (
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// Environment variables of a port plugin. The host passes its environment on
// to the plugin (go-plugin does), so otarun and tests choose the flash file
// and the bootloader's keys without flags on the plugin.
const (
	// EnvFlash names the flash image file of the emulated device.
	EnvFlash = "OTAPORT_FLASH"
	// EnvBootKey lists the PEM public keys (comma-separated files) the
	// simulated bootloader verifies images with.
	EnvBootKey = "OTAPORT_BOOT_KEY"
	// EnvBootEncKey names the private key file the simulated bootloader of
	// an MCUboot board decrypts encrypted images with, as MCUboot is
	// built with it.
	EnvBootEncKey = "OTAPORT_BOOT_ENC_KEY"
)

// Config is how a port is opened. A plugin's main fills it from its
// environment (FromEnv); a program that opens a port in-process fills it
// itself.
type Config struct {
	// Flash is the file the flash emulator keeps the board's flash in;
	// empty means ./<board>.flash. A port over real flash ignores it.
	Flash string
	// KeyFiles are PEM files of public keys the simulated bootloader
	// verifies images with, on top of Keys. With no key at all it checks
	// image hashes only.
	KeyFiles []string
	// Keys are public keys the bootloader verifies images with.
	Keys []crypto.PublicKey
	// EncKeyFile is the private key file of EnvBootEncKey; empty: none.
	EncKeyFile string
	// Logger receives what the bootloader does, with the board's name; nil
	// discards it.
	Logger *slog.Logger
}

// FromEnv returns the configuration a plugin's environment asks for:
// OTAPORT_FLASH, OTAPORT_BOOT_KEY and OTAPORT_BOOT_ENC_KEY. getenv is os.Getenv in the plugin's
// main, which is the one place that reads the environment.
func FromEnv(getenv func(string) string, logger *slog.Logger) Config {
	cfg := Config{Flash: getenv(EnvFlash), Logger: logger, EncKeyFile: strings.TrimSpace(getenv(EnvBootEncKey))}
	for _, f := range strings.Split(getenv(EnvBootKey), ",") {
		if f = strings.TrimSpace(f); f != "" {
			cfg.KeyFiles = append(cfg.KeyFiles, f)
		}
	}
	return cfg
}

// OpenDevice opens a board's flash: a port's driver.go implements it.
type OpenDevice func(l hal.Layout, cfg Config) (flash.Device, error)

// Open opens the flash of the board of layout l with open and returns the
// platform over it, which owns the device: closing it closes the flash. A
// port without verification keys says so in the log.
func Open(l hal.Layout, open OpenDevice, cfg Config) (*boot.Platform, error) {
	opts, err := options(l, cfg)
	if err != nil {
		return nil, fmt.Errorf("port %s: %w", l.Board, err)
	}
	dev, err := open(l, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s flash: %w", l.Board, err)
	}
	opts.CloseDevice = true
	p, err := boot.NewPlatform(l, dev, opts)
	if err != nil {
		if c, ok := dev.(io.Closer); ok {
			c.Close()
		}
		if cfg.Flash != "" {
			// What the flash holds is refused (an older layout of the
			// board): name the file the user is to replace.
			return nil, fmt.Errorf("port %s: flash file %s: %w", l.Board, cfg.Flash, err)
		}
		return nil, fmt.Errorf("port %s: %w", l.Board, err)
	}
	if len(opts.Keys) == 0 && opts.Logger != nil {
		opts.Logger.Warn("no boot verification keys (" + EnvBootKey + " is empty): the bootloader checks image hashes only")
	}
	return p, nil
}

// options returns the bootloader's options of cfg. A key file that cannot
// be read is an error, never a silent fall back to hash-only checks.
func options(l hal.Layout, cfg Config) (boot.Options, error) {
	opts := boot.Options{Keys: append([]crypto.PublicKey(nil), cfg.Keys...)}
	if cfg.Logger != nil {
		opts.Logger = cfg.Logger.With("board", l.Board)
	}
	keys, err := image.ReadPublicKeys(cfg.KeyFiles)
	if err != nil {
		return boot.Options{}, fmt.Errorf("%s: %w", EnvBootKey, err)
	}
	opts.Keys = append(opts.Keys, keys...)
	if cfg.EncKeyFile != "" {
		if opts.DecryptKey, err = image.ReadDecryptionKey(cfg.EncKeyFile); err != nil {
			return boot.Options{}, fmt.Errorf("%s: %w", EnvBootEncKey, err)
		}
	}
	return opts, nil
}

// EmulatedFlash opens the flash emulator with the geometry of l over file,
// or ./<board>.flash when file is empty; a missing file is created erased.
// It is the default of a generated port's driver.go, so the port runs on a
// laptop.
func EmulatedFlash(l hal.Layout, file string) (flash.Device, error) {
	if file == "" {
		file = "./" + l.Board + ".flash"
	}
	dev, err := flash.OpenFile(file, l.Flash)
	if err != nil {
		// err names the file already (flash.OpenFile): add only the fix.
		return nil, fmt.Errorf("%w (%s chooses another file)", err, EnvFlash)
	}
	return dev, nil
}

// Entry is one port of a catalog (ports/all lists them).
type Entry struct {
	// Name is the board name, as in boards.yaml and ports/<name>.
	Name string
	// Layout returns the board's layout.
	Layout func() hal.Layout
}

// New returns the port over dev, which must have the board's geometry; the
// caller keeps dev, so the same flash can be powered on again. Its
// bootloader checks image hashes only and logs nothing.
func (e Entry) New(dev flash.Device) (hal.Platform, error) {
	p, err := boot.NewPlatform(e.Layout(), dev, boot.Options{})
	if err != nil {
		return nil, fmt.Errorf("port %s: %w", e.Name, err)
	}
	return p, nil
}

// Lookup returns the entry of catalog called name.
func Lookup(catalog []Entry, name string) (Entry, bool) {
	for _, e := range catalog {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}
