package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/hal"
)

// flakyWrites is a port whose Write fails once, busy (an error a later
// attempt may not have), at the first write at or past failAt; it records
// the offsets of the writes that reach the flash.
type flakyWrites struct {
	hal.Platform
	failAt uint64

	mu      sync.Mutex
	failed  bool
	offsets []uint64
}

func (f *flakyWrites) Write(ctx context.Context, off uint64, data []byte) error {
	f.mu.Lock()
	fail := !f.failed && off >= f.failAt
	if fail {
		f.failed = true
	} else {
		f.offsets = append(f.offsets, off)
	}
	f.mu.Unlock()
	if fail {
		return hal.Errorf(hal.CodeBusy, "write at 0x%x: flash controller busy", off)
	}
	return f.Platform.Write(ctx, off, data)
}

// TestInstall_PortFailureResumesAtTheFailedWrite: the download hashes
// ahead of the port, so when a write fails the chunks after it are already
// hashed; the state kept must still be that of exactly the bytes written.
// The resume then starts at the failed write, without starting over, and
// the image verifies.
func TestInstall_PortFailureResumesAtTheFailedWrite(t *testing.T) {
	for _, digest := range []bool{false, true} {
		name := "no digest"
		if digest {
			name = "sha256 digest"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d := newDevice(t, "esp32-devkitc", newKeys(t))
			d.factory("1.0.0", 8<<10)
			img := signed(t, d.keys.priv, "1.1.0", 400<<10, 2)
			src := engine.Source{URL: writeFile(t, img)}
			if digest {
				src.Digest = "sha256:" + sha256Hex(img)
			}
			const failAt = 192 << 10 // a chunk boundary
			opts := engine.Options{ChunkSize: 16 << 10, CheckpointEvery: 16 << 10}

			first := &flakyWrites{Platform: d.plat, failAt: failAt}
			err := d.engineOn(first, opts).Install(ctx, src)
			if hal.CodeOf(err) != hal.CodeBusy || !strings.Contains(err.Error(), "busy") {
				t.Fatalf("install = %v, want the port's busy error", err)
			}
			st := d.status()
			if st.State != engine.Downloading || st.Offset != failAt {
				t.Fatalf("after the failure: %s at %d, want downloading at %d (every chunk before the failed write)", st.State, st.Offset, failAt)
			}

			again := &flakyWrites{Platform: d.plat, failAt: ^uint64(0)}
			if err := d.engineOn(again, opts).Install(ctx, src); err != nil {
				t.Fatalf("install again: %v", err)
			}
			if len(again.offsets) == 0 || again.offsets[0] != failAt {
				t.Fatalf("the second install wrote first at %v, want 0x%x: it started over", again.offsets[:min(1, len(again.offsets))], failAt)
			}
			if st := d.expectRuns("1.1.0+0"); st.State != engine.Testing {
				t.Fatalf("state %s, want testing", st.State)
			}
		})
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
