package sequences

import (
	"context"
)

// shrink returns a smallest sequence it finds that still breaks the same
// rule as steps does, by delta debugging (Zeller's ddmin) over the steps,
// then by removing each remaining step's power cut. Each step keeps its own
// drawn values (image, version, cut), so a subsequence replays the same
// steps; only the device's history around them changes.
func shrink(ctx context.Context, f *fixture, steps []step, rule string) ([]step, *failure) {
	fails := func(s []step) *failure {
		fl, _ := run(ctx, f, s)
		if fl != nil && fl.v.Rule == rule {
			return fl
		}
		return nil
	}
	cur := steps
	best := fails(cur)
	if best == nil {
		return steps, nil // not reproducible: keep what was found
	}
	// Nothing after the failing step matters.
	cur = cur[:best.at+1]
	n := 2
	for len(cur) >= 2 {
		chunk := (len(cur) + n - 1) / n
		reduced := false
		for start := 0; start < len(cur); start += chunk {
			end := min(start+chunk, len(cur))
			cand := append(append([]step(nil), cur[:start]...), cur[end:]...)
			if fl := fails(cand); fl != nil {
				cur, best = cand[:fl.at+1], fl
				n = max(n-1, 2)
				reduced = true
				break
			}
		}
		if !reduced {
			if n >= len(cur) {
				break
			}
			n = min(n*2, len(cur))
		}
	}
	// A cut the failure does not need is noise in the reproduction.
	for i := 0; i < len(cur); i++ {
		if !cur[i].cut.on {
			continue
		}
		cand := append([]step(nil), cur...)
		cand[i].cut.on = false
		if fl := fails(cand); fl != nil {
			cur, best = cand[:fl.at+1], fl
		}
	}
	return cur, best
}
