//go:build unix

package flash_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/core/flash"
)

// TestOpenFile_ReadsNothingAtOpen: the flash is the file's content as it
// is when read, not a copy made at open. A change to the file after open
// shows through (this is what lets OpenFile of a large part cost nothing
// until its pages are used).
func TestOpenFile_ReadsNothingAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.flash")
	e, err := flash.OpenFile(path, uniform(4, 0xFF))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("poke"), 40000); err != nil {
		t.Fatal(err)
	}
	if got := read(t, e, 40000, 4); string(got) != "poke" {
		t.Fatalf("flash at 40000 = %q after the file changed, want %q", got, "poke")
	}
}
