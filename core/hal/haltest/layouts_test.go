package haltest_test

import (
	"slices"
	"testing"

	"github.com/otaport/otaport/core/hal/haltest"
)

// Every board it names is there under that name, and a caller that changes
// its copy changes no one else's.
func TestLayout_NamedBoardsAreFreshCopies(t *testing.T) {
	names := haltest.Boards()
	if len(names) == 0 || !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Fatalf("Boards() = %v: want sorted, distinct names", names)
	}
	for _, n := range append(slices.Clone(names), haltest.Extra()...) {
		l, ok := haltest.Layout(n)
		if !ok || l.Board != n {
			t.Fatalf("Layout(%q) = board %q, %v", n, l.Board, ok)
		}
		l.Partitions[0].Size++
		l.Flash.Sectors[0].Count++
		again, _ := haltest.Layout(n)
		if again.Partitions[0].Size == l.Partitions[0].Size || again.Flash.Sectors[0].Count == l.Flash.Sectors[0].Count {
			t.Errorf("Layout(%q): a change to one copy shows in the next", n)
		}
	}
	if _, ok := haltest.Layout("no-such-board"); ok {
		t.Error("Layout found a board it does not hold")
	}
}

// The boards outside the catalog are valid layouts, and not among Boards
// (which ports/all checks against the catalog).
func TestExtra_ValidAndApart(t *testing.T) {
	for _, n := range haltest.Extra() {
		if slices.Contains(haltest.Boards(), n) {
			t.Errorf("%s is both in Boards and in Extra", n)
		}
		l, _ := haltest.Layout(n)
		if err := l.Validate().Err(); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}
