package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/otaport/otaport/cmd/internal/cli"
)

// pluginPrefix is how a port plugin is named: otaport-<board>.
const pluginPrefix = "otaport-"

// flashFile returns the absolute path of the emulated device's flash, which
// otarun passes to the plugin as OTAPORT_FLASH: --flash (or OTAPORT_FLASH),
// else the file the plugin would pick itself, ./<board>.flash, the board
// taken from the plugin's name. A port plugin creates a missing flash file
// erased: a command reading a device would then show a blank one and leave
// the file behind. So a missing file is refused unless create, which only
// provision (the factory making a new device) asks for.
func (e *env) flashFile(cmd string, create bool) (string, error) {
	if err := e.checkPlugin(); err != nil {
		return "", err
	}
	file := e.opts.flash
	if file == "" {
		base := strings.TrimSuffix(filepath.Base(e.opts.plugin), ".exe")
		board, ok := strings.CutPrefix(base, pluginPrefix)
		if !ok || board == "" {
			return "", cli.Usagef("no flash file: give the emulated device's flash with --flash FILE (or OTAPORT_FLASH)")
		}
		file = board + ".flash"
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", fmt.Errorf("flash file %s: %w", file, err)
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) && !create {
		fix := "give the device's flash with --flash FILE (or OTAPORT_FLASH), or make a new device with otarun provision --flash FILE --key pub.pem IMAGE"
		if e.flashOf != "" {
			fix = fmt.Sprintf("make the module's flash with otarun provision --config %s --module %s IMAGE", e.device.File(), e.flashOf)
		}
		return abs, fmt.Errorf("%w: flash file %s does not exist, and otarun %s would start a blank device there: %s", errMissingFlash, abs, cmd, fix)
	}
	return abs, nil
}

// errMissingFlash marks a flash file that does not exist.
var errMissingFlash = errors.New("no device")
