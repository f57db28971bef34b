//go:build race

package sequences

// raceEnabled: the race detector makes a run several times slower, and
// make test runs every package with it: the sample shrinks.
const raceEnabled = true
