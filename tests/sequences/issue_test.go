package sequences

import (
	"context"
	"testing"

	"github.com/otaport/otaport/ports/all"
)

// TestSequences_Issue9 plays reproductions 1 and 3 of issue 9, exactly as
// the issue gives them, through the same runner and model as the random
// sequences: each must keep every promise. They are what the random
// tester found on its own, written down so that a fix is checked against
// the very sequence the user typed.
func TestSequences_Issue9(t *testing.T) {
	configFromEnv(t) // skips, as the suite does, unless switched on
	boot := step{kind: stepBoot}
	cases := []struct {
		name, board string
		steps       []step
	}{
		{
			// 1: the 4th boot reverts to 1.0.0; rollback must then be
			// refused, or at least never bring 1.1.0 back.
			name: "reverted image comes back", board: "b-l475e-iot01a",
			steps: []step{
				{kind: stepInstall, img: imgGood, version: "1.1.0+0"},
				boot, boot, boot, boot, boot,
				{kind: stepRollback},
				boot,
			},
		},
		{
			// 1, second form: a rollback from a trial, then another
			// rollback.
			name: "second rollback after a rollback from trial", board: "b-l475e-iot01a",
			steps: []step{
				{kind: stepInstall, img: imgGood, version: "1.1.0+0"},
				boot,
				{kind: stepRollback},
				boot,
				{kind: stepRollback},
				boot,
			},
		},
		{
			// 3: a refused install must leave the pending one alone, and
			// status must keep saying it is pending.
			name: "refused install hides a pending one", board: "b-l475e-iot01a",
			steps: []step{
				{kind: stepInstall, img: imgGood, version: "1.1.0+0"},
				{kind: stepInstall, img: imgOversized, version: "1.2.0+0"},
				boot,
				{kind: stepConfirm},
			},
		},
	}
	ctx := context.Background()
	dir := t.TempDir()
	fixtures := map[string]*fixture{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := fixtures[c.board]
			if f == nil {
				e, ok := all.Lookup(c.board)
				if !ok {
					t.Fatalf("board %s is not in the catalog", c.board)
				}
				var err error
				if f, err = newFixture(ctx, e.Name, e.Layout(), dir, false); err != nil {
					t.Fatal(err)
				}
				fixtures[c.board] = f
			}
			if fl, _ := run(ctx, f, c.steps); fl != nil {
				t.Errorf("step %d breaks a promise: %v\n%s", fl.at+1, fl.v, otarun(f, c.steps[:fl.at+1], fl))
			}
		})
	}
}
