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
// shrunk but the image. The package is test support: its tests are the
// suite (docs/power-cut.md), and Run is exported so that a benchmark or a
// one-off investigation can drive a sweep with other settings. It is not a
// fault injector for real hardware.
package powercut
