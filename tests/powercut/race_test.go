//go:build race

package powercut

// raceEnabled: the race detector makes a run several times slower, and
// make test runs every package with it: the sample shrinks.
const raceEnabled = true
