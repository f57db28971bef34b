package sequences

import (
	"context"
	"testing"

	"github.com/otaport/otaport/tests/sequences/model"
)

// shrink returns a smallest sequence it finds that still breaks the same
// rule as steps does, by delta debugging (Zeller's ddmin) over the steps,
// then by removing each remaining step's power cut. Each step keeps its own
// drawn values (image, version, cut), so a subsequence replays the same
// steps; only the device's history around them changes.
func shrink(ctx context.Context, f *fixture, steps []step, rule string) ([]step, *failure) {
	return ddmin(steps, func(s []step) *failure {
		fl, _ := run(ctx, f, s)
		if fl != nil && fl.v.Rule == rule {
			return fl
		}
		return nil
	})
}

// ddmin is shrink over any replay: fails plays a sequence and returns its
// failure, or nil when it keeps every promise (or breaks another one).
func ddmin(steps []step, fails func([]step) *failure) ([]step, *failure) {
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

// TestShrink_Minimal checks the shrinker against a failure whose minimal
// sequence is known: an install, then a rollback, then a boot, hidden in
// noise and with a cut that does not matter.
func TestShrink_Minimal(t *testing.T) {
	install := step{kind: stepInstall, img: imgGood, version: "1.0.1+0"}
	rollback := step{kind: stepRollback, cut: cut{on: true, frac: 0.5}}
	boot := step{kind: stepBoot}
	noise := []step{{kind: stepStatus}, {kind: stepConfirm}, {kind: stepResume}}
	var steps []step
	for i, s := range []step{install, rollback, boot} {
		steps = append(steps, noise[i%3], noise[(i+1)%3], s, noise[(i+2)%3])
	}
	// It fails at the first boot after a rollback after an install.
	fails := func(s []step) *failure {
		stage := 0
		for i, x := range s {
			switch {
			case stage == 0 && x.kind == stepInstall, stage == 1 && x.kind == stepRollback:
				stage++
			case stage == 2 && x.kind == stepBoot:
				return &failure{v: &model.Violation{Rule: "test"}, at: i}
			}
		}
		return nil
	}
	got, fl := ddmin(steps, fails)
	if fl == nil || len(got) != 3 || got[0].kind != stepInstall || got[1].kind != stepRollback || got[2].kind != stepBoot {
		t.Fatalf("shrunk to %+v, want install, rollback, boot", got)
	}
	if got[1].cut.on {
		t.Errorf("the rollback keeps its power cut, which the failure does not need")
	}
}
