//go:build unix

package flash_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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

// TestOpenFile_OneOwner: a flash file is one device: a second emulator
// over it (a second port plugin started by a restarted agent while the
// first still runs, or a status beside a running agent) is refused with
// the file and the holder's PID named, and the file is free again once the
// first closes it or powers it off and on.
func TestOpenFile_OneOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.flash")
	g := uniform(4, 0xFF)
	e, err := flash.OpenFile(path, g)
	if err != nil {
		t.Fatal(err)
	}
	_, err = flash.OpenFile(path, g)
	if !errors.Is(err, flash.ErrInUse) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v, want ErrInUse naming %s", err, path)
	}
	if runtime.GOOS == "linux" && !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Errorf("second open: %v, want the holder's PID %d named", err, os.Getpid())
	}
	e, err = e.Reopen()
	if err != nil {
		t.Fatalf("Reopen while the lock is held by the emulator itself: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = flash.OpenFile(path, g)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	_ = e.Close()
}
