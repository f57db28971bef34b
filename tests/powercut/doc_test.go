// Package powercut is otaport's power-cut suite: it runs whole upgrades of
// catalog boards on the flash emulator, cuts the power before, after and in
// the middle of every flash operation they make, powers the device on again
// (the simulated bootloader, then the engine's recovery) and checks that it
// runs a valid image, that the recorded state agrees with what runs, and
// that retrying completes the upgrade.
//
// It follows the method of MCUboot's simulator (count the operations N of a
// clean run, then for every k in 1..N stop at k on a clone of the flash and
// boot again, plus runs of several successive cuts at random points) and
// goes beyond it in two ways its simulator lacks: a cut after an operation
// completes, and a torn operation that leaves part of a program or an erase
// done (flash.Torn).
//
// Everything runs in one process over the real boot.Platform, the real
// engine and real signed images, with the boards' own layouts: nothing is
// shrunk but the image. It is not a fault injector for real hardware.
//
// It is a test and nothing else: every file is a _test.go file, so no
// package can import it, and it sits outside core/ because it runs the
// catalog's boards (ports/all), which core must not depend on. Its tests
// are the suite (docs/power-cut.md); a one-off investigation drives a
// sweep with other settings through Run from a test of this package, or
// through the OTAPORT_POWERCUT variables of TestPowerCut.
package powercut
