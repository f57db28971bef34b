// driver.go holds the hook of the port that is written by hand. otagen created
// it once and never overwrites it: replace the flash emulator by the board's
// real flash driver here.

package esp32devkitc

import (
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/ports/portkit"
)

// openDevice opens the board's flash. The default is the flash emulator over
// the file cfg.Flash (the plugin's OTAPORT_FLASH; default ./esp32-devkitc.flash),
// created erased when missing, so the port runs on a laptop. A real port
// returns its flash driver here: anything that implements flash.Device.
func openDevice(l hal.Layout, cfg portkit.Config) (flash.Device, error) {
	return portkit.EmulatedFlash(l, cfg.Flash)
}
