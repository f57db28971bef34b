package agent_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// slotPort is the rig's port with the capability to read any slot, by
// name, from the emulated flash: what a port with hal's SlotReader offers.
type slotPort struct {
	agent.Port
	flash *flash.Emulator
}

func (p slotPort) ReadSlot(ctx context.Context, slot string, off uint64, n int) ([]byte, error) {
	info, err := p.Describe(ctx)
	if err != nil {
		return nil, err
	}
	part, ok := info.Layout.Partition(slot)
	if !ok || off+uint64(n) > part.Size {
		return nil, fmt.Errorf("read %s at 0x%x+%d: %w", slot, off, n, hal.ErrOutOfBounds)
	}
	b := make([]byte, n)
	_, err = p.flash.ReadAt(b, int64(part.Offset+off))
	return b, err
}

// plainPort hides every capability beyond agent.Port.
type plainPort struct{ agent.Port }

// hashOf returns the lower-case hex hash TLV of the rig's image of v.
func (r *rig) hashOf(v string) string {
	r.t.Helper()
	b := r.sign(v)
	img, err := image.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		r.t.Fatal(err)
	}
	return hex.EncodeToString(img.Hash)
}

// reportedHash returns the image hash of the version report of v among
// the messages from index from.
func (r *rig) reportedHash(from int, v string) (string, int) {
	r.t.Helper()
	i := r.waitFor("inform "+v, from, informOf(v))
	in, err := cloud.ParseInform(r.since(i - 1)[0].payload)
	if err != nil {
		r.t.Fatal(err)
	}
	return in.Params.ImageHash, i
}

// TestAgent_ReportsRunningImageHash: the version report carries the hash
// TLV of the image that runs, read from its slot, before and after an
// upgrade; a port that cannot read its running slot reports none (and is
// sent full images).
func TestAgent_ReportsRunningImageHash(t *testing.T) {
	r := newRig(t)
	r.dev = slotPort{Port: r.port, flash: r.flash}
	r.start(r.config())
	got, i := r.reportedHash(0, "1.0.0+0")
	if want := r.hashOf("1.0.0"); got != want {
		t.Errorf("at start the report says image hash %q, want %s, the provisioned image's", got, want)
	}
	r.order(1001, "1.1.0", nil)
	got, _ = r.reportedHash(i, "1.1.0+0")
	if want := r.hashOf("1.1.0"); got != want {
		t.Errorf("after the upgrade the report says image hash %q, want %s, the new image's", got, want)
	}
}

func TestAgent_NoImageHashWithoutSlotReads(t *testing.T) {
	r := newRig(t)
	r.dev = plainPort{r.port}
	r.start(r.config())
	if got, _ := r.reportedHash(0, "1.0.0+0"); got != "" {
		t.Errorf("a port that cannot read its running slot reported image hash %q", got)
	}
}
