package flash_test

import (
	"bytes"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/otaport/otaport/core/flash"
)

func program(t *testing.T, e *flash.Emulator, off int64, p []byte) {
	t.Helper()
	if err := e.Program(off, p); err != nil {
		t.Fatalf("Program(0x%x): %v", off, err)
	}
}

func TestSharePages_IdenticalPagesShareAndStayIndependent(t *testing.T) {
	pool := flash.NewPagePool()
	img := randBytes(7, 16<<10)
	a, b := newMem(t, uniform(4, 0xff)), newMem(t, uniform(4, 0xff))
	program(t, a, 8<<10, img)
	program(t, b, 8<<10, img)
	program(t, b, 32<<10, randBytes(8, 4<<10)) // b's own page

	if n := a.SharePages(pool); n != 0 {
		t.Errorf("the first emulator's SharePages = %d; want 0: the pool had nothing to share", n)
	}
	if n := b.SharePages(pool); n != 4 {
		t.Errorf("the second emulator's SharePages = %d; want 4, the image's pages", n)
	}
	if n := pool.Len(); n != 5 {
		t.Errorf("pool.Len() = %d; want 5: the image's 4 pages and b's own", n)
	}
	// Sharing again changes nothing: the pages are no longer the
	// emulators' own.
	if n := b.SharePages(pool); n != 0 {
		t.Errorf("SharePages again = %d; want 0", n)
	}

	// A write to a shared page copies it first: the other emulator keeps
	// the image.
	program(t, a, 8<<10, make([]byte, 16))
	if got := read(t, b, 8<<10, len(img)); !bytes.Equal(got, img) {
		t.Fatal("b's image changed when a wrote over its shared page")
	}
	if got := read(t, a, 8<<10, 16); !bytes.Equal(got, make([]byte, 16)) {
		t.Fatalf("a reads % x after programming zeros", got)
	}
	if err := b.Erase(8<<10, 4<<10); err != nil {
		t.Fatal(err)
	}
	if got := read(t, a, 12<<10, 4<<10); !bytes.Equal(got, img[4<<10:8<<10]) {
		t.Fatal("a's page changed when b erased its shared copy")
	}
}

func TestSharePages_ErasedPageBecomesBlank(t *testing.T) {
	pool := flash.NewPagePool()
	e := newMem(t, uniform(4, 0xff))
	// Programming the erased value makes the page the emulator's own
	// while it reads erased.
	program(t, e, 0, bytes.Repeat([]byte{0xff}, 4<<10))
	if n := e.SharePages(pool); n != 1 {
		t.Errorf("SharePages = %d; want 1, the page that reads erased", n)
	}
	if n := pool.Len(); n != 0 {
		t.Errorf("pool.Len() = %d; want 0: an erased page is the emulator's blank one", n)
	}
	program(t, e, 0, []byte{1, 2, 3, 4})
	if got := read(t, e, 0, 8); !bytes.Equal(got, []byte{1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff}) {
		t.Fatalf("after a write to the blank page: % x", got)
	}
	fresh := newMem(t, uniform(4, 0xff))
	if got := read(t, fresh, 0, 4); !bytes.Equal(got, []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Fatal("a write over a shared blank page reached another emulator")
	}
}

func TestSharePages_PagesNoOneUsesAreCollected(t *testing.T) {
	pool := flash.NewPagePool()
	e := newMem(t, uniform(4, 0xff))
	for i := range 8 {
		// The device rewrites its record: a new page each time, and the
		// previous one is no longer used.
		if err := e.Erase(0, 4<<10); err != nil {
			t.Fatal(err)
		}
		program(t, e, 0, randBytes(uint64(100+i), 4<<10))
		e.SharePages(pool)
		runtime.GC()
	}
	runtime.GC()
	// Adding pages sweeps the collected ones once they outnumber the live.
	other := newMem(t, uniform(4, 0xff))
	for i := range 16 {
		program(t, other, int64(i)<<12, randBytes(uint64(200+i), 4<<10))
	}
	other.SharePages(pool)
	if n := pool.Len(); n > 16+2 {
		t.Errorf("pool.Len() = %d; want at most 18: the rewritten records' old pages should be gone", n)
	}
	runtime.KeepAlive(e)
	runtime.KeepAlive(other)
}

func TestSharePages_FileBackedSharesNothing(t *testing.T) {
	e, err := flash.OpenFile(filepath.Join(t.TempDir(), "flash.bin"), uniform(4, 0xff))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	program(t, e, 0, randBytes(1, 4<<10))
	if n := e.SharePages(flash.NewPagePool()); n != 0 {
		t.Errorf("SharePages on a file-backed emulator = %d; want 0", n)
	}
}

// The memory the pool saves: 200 emulators that each wrote the same 64 KiB
// hold one copy of it once shared.
func TestSharePages_OneCopyForManyEmulators(t *testing.T) {
	pool := flash.NewPagePool()
	img := randBytes(3, 64<<10)
	const n = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ems := make([]*flash.Emulator, n)
	for i := range ems {
		ems[i] = newMem(t, uniform(4, 0xff))
		program(t, ems[i], 0, img)
		ems[i].SharePages(pool)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEmulator := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	// Without sharing each would hold its 64 KiB.
	if perEmulator > 8<<10 {
		t.Errorf("%d B of heap per emulator after sharing; want under 8 KiB (64 KiB each without)", perEmulator)
	}
	for _, e := range ems {
		if got := read(t, e, 0, len(img)); !bytes.Equal(got, img) {
			t.Fatal("an emulator reads other than its image after sharing")
		}
	}
}
