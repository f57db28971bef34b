package agent

import (
	"context"
	"fmt"

	"github.com/otaport/otaport/core/image"
)

// A module's MCUboot image index is its place in device.yaml's modules
// (0 for the first; a device of one module is image 0), as an MCUboot
// multi-image build numbers its images. An image's DEPENDENCY TLVs name
// the other images that must run a version first (imgtool sign -d): the
// agent, which runs every module, checks them before the boot request, so
// that the modules of one release go together and an order withheld for
// one module cannot leave another running an image that needs it.

// checkDependencies checks deps of an image for unit self against what the
// device's other modules run now.
func (a *Agent) checkDependencies(ctx context.Context, self *unit, deps []image.Dependency) error {
	for _, d := range deps {
		if int(d.ImageID) >= len(a.units) {
			return fmt.Errorf("it depends on image %d at %s or later, and this device has %d image(s) (device.yaml modules, in order, from 0)", d.ImageID, d.MinVersion, len(a.units))
		}
		other := a.units[d.ImageID]
		if other == self {
			return fmt.Errorf("it depends on image %d, its own module %s", d.ImageID, self.moduleName())
		}
		info, err := other.port.Describe(ctx)
		if err != nil {
			return fmt.Errorf("its dependency on module %s (image %d): %w", other.moduleName(), d.ImageID, err)
		}
		run, ok := info.Boot.Running()
		v, perr := image.ParseVersion(run.Version)
		if !ok || !run.Bootable || perr != nil {
			return fmt.Errorf("it needs module %s (image %d) at %s or later, which runs no image", other.moduleName(), d.ImageID, d.MinVersion)
		}
		if v.Compare(d.MinVersion) < 0 {
			return fmt.Errorf("it needs module %s (image %d) at %s or later, which runs %s: upgrade module %s first (the modules of a release go together)",
				other.moduleName(), d.ImageID, d.MinVersion, v, other.moduleName())
		}
	}
	return nil
}

// moduleName is the module's name as device.yaml and orders give it.
func (u *unit) moduleName() string {
	if u.module == "" {
		return "default"
	}
	return u.module
}
