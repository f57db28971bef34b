// driver.go holds the hooks of the port that are written by hand. otagen created
// it once and never overwrites it: replace the flash emulator by the board's
// real flash driver here.

package stm32f769idisco

import (
	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// openDevice opens the board's flash. The default is the flash emulator over
// the file named by OTAPORT_FLASH (default ./stm32f769i-disco.flash), created
// erased when missing, so the port runs on a laptop. A real port returns its
// flash driver here: anything that implements flash.Device.
func openDevice(l hal.Layout) (flash.Device, error) {
	return boot.EmulatedFlash(l, "./stm32f769i-disco.flash")
}

// options returns the bootloader's options. The default takes its verification
// keys from the PEM files listed in OTAPORT_BOOT_KEY; with none, the simulated
// bootloader checks hashes only.
func options() (boot.Options, error) {
	return boot.EnvOptions("stm32f769i-disco")
}
