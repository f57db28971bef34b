// Package sequences is otaport's sequence tester: seeded, randomized
// sequences of the commands a user types (install of good and bad images,
// resume, boot, confirm, rollback, status, keyset) and of the device agent (started,
// given an order, its health check passing or failing, stopped) with power
// cuts before, after and torn at random flash operations, run over the real
// parts (boot.Platform on the flash emulator, the simulated bootloader, the
// engine, the agent) on every catalog board and the swap board of
// core/hal/haltest, and checked after every step against the reference model
// in tests/sequences/model, which imports neither the engine nor the
// bootloader.
//
// The power-cut suite (tests/powercut) enumerates the cuts of the flows it
// knows; this suite samples the flows nobody enumerated. A sequence that
// breaks a promise is shrunk (delta debugging over its steps, each step
// keeping its own seed) and printed as the otarun commands that reproduce
// it.
//
// OTAPORT_SEQUENCES selects the mode: unset or "sample" runs a small seeded
// sample (what `make test` runs); "full" runs
// OTAPORT_SEQUENCES_STEPS steps (default 1,000,000) and prints the counts
// (`make sequences`). OTAPORT_SEQUENCES_SEED changes the seed, and
// OTAPORT_SEQUENCES_BOARDS=a,b picks the boards (every catalog board and
// core/hal/haltest's swap board by default).
//
// It is a test and nothing else: every file is a _test.go file.
package sequences
