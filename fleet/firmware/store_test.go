package firmware_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/fleet/firmware"
)

// TestNewStore_RemovesUploadsLeftByACrash: an upload in progress when
// otaserve died leaves its temporary file; the next start removes it (one
// otaserve per data directory, so no upload can be in progress then) and
// keeps every stored blob.
func TestNewStore_RemovesUploadsLeftByACrash(t *testing.T) {
	dir := t.TempDir()
	blob := filepath.Join(dir, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	left := filepath.Join(dir, ".upload-4242")
	for _, f := range []string{blob, left} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := firmware.NewStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("%s is still there after a start (err %v)", left, err)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Errorf("a stored blob is gone: %v", err)
	}
}
