//go:build !race

package sequences

const raceEnabled = false
