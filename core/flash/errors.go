package flash

import "github.com/otaport/otaport/core/hal"

// Sentinel errors of the emulator. Each also matches the hal sentinel of its
// code (errors.Is(err, hal.ErrMisaligned), hal.CodeOf(err)), so a port that
// wraps a flash error with %w reports the right code to the core without a
// translation table. They stay distinct from one another and from other
// errors of the same code: errors.Is(hal.ErrFlash, flash.ErrPowerCut) is false.
var (
	// ErrOutOfBounds: the operation reaches past the end of the flash.
	ErrOutOfBounds error = &codedError{"flash: out of bounds", hal.CodeOutOfBounds}
	// ErrMisaligned: a program offset or length that is not a multiple of
	// the write alignment, or an erase that does not cover whole sectors.
	ErrMisaligned error = &codedError{"flash: misaligned", hal.CodeMisaligned}
	// ErrNotErased: programming over bytes that are not erased, refused in
	// strict mode only (real NOR accepts it and ANDs the bits).
	ErrNotErased error = &codedError{"flash: not erased", hal.CodeNotErased}
	// ErrPowerCut: the injected power cut has happened; nothing reaches the
	// flash until a new power-on (Clone or Reopen).
	ErrPowerCut error = &codedError{"flash: power cut", hal.CodeFlash}
	// ErrInUse: another emulator (another process, usually a port plugin)
	// has the flash file open: one file is one device.
	ErrInUse error = &codedError{"flash: in use", hal.CodeBusy}
	// ErrClosed: the emulator was closed.
	ErrClosed error = &codedError{"flash: closed", hal.CodeFlash}
)

// codedError is a sentinel with its own identity that unwraps to a hal.Error
// of its code.
type codedError struct {
	msg  string
	code hal.Code
}

func (e *codedError) Error() string { return e.msg }

// Unwrap exposes the hal code to errors.Is and hal.CodeOf.
func (e *codedError) Unwrap() error { return &hal.Error{Code: e.code, Msg: e.msg} }
