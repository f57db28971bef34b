package agent_test

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
)

// plainPort hides every capability beyond agent.Port: the port's
// SlotReader among them.
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
	r := newRig(t) // the emulated device reads its slots (hal.SlotReader)
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
