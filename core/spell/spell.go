// Package spell finds what a user meant by a name that is not one: the field
// of a file or the value of a setting closest to a typo, for the "did you
// mean" of a message. Board files (portgen) and device.yaml (core/agent) use
// it, so that both suggest the same way. It is not for command names, which
// the command-line library suggests itself.
package spell

import "strings"

// Nearest returns the known name closest to name when it is close enough to
// be a typo, else "".
func Nearest(name string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		d := levenshtein(strings.ToLower(name), k)
		if d < bestD {
			best, bestD = k, d
		}
	}
	if bestD <= 2 || bestD*3 <= len(name) {
		return best
	}
	return ""
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
