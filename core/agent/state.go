package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
)

// MaxStateChanges is how many persisted state changes one order may go
// through before the agent gives it up: Mender's state-loop guard, with
// Mender's number. An upgrade takes about six (accepted, installed,
// rebooting, checking, done); a device that keeps rebooting into the same
// step runs into the guard instead of looping for ever.
const MaxStateChanges = 28

// MaxRebootsPerImage is how many times the agent resets the device on
// account of one image, counted in its persisted record and so across agent
// restarts: an upgrade needs one (into the new image), a health check that
// fails on a dual-bank board a second (back to the old one). Past it the
// agent leaves the device as it is rather than loop, however it got there
// (a reset that does nothing, a bootloader that keeps booting the same
// image, a record an older agent left).
const MaxRebootsPerImage = 3

// maxFailures is how many failed images the agent remembers; maxCounts how
// many images it keeps reset counts for.
const (
	maxFailures = 8
	maxCounts   = 8
)

// Phase is where the agent stands with its current order. It is persisted
// before the step it names, as the engine's state is.
type Phase string

// Phases of an order.
const (
	// PhaseInstalling: the engine downloads and verifies the image.
	PhaseInstalling Phase = "installing"
	// PhaseRebooting: the image is installed and the device reboots into it.
	PhaseRebooting Phase = "rebooting"
	// PhaseChecking: the new image runs on trial; the health check decides.
	PhaseChecking Phase = "checking"
	// PhaseReverting: the health check failed; the device returns to the
	// old image.
	PhaseReverting Phase = "reverting"
)

// record is the agent's persisted state: the order in hand and the images
// that failed here, so that a cloud that re-sends a failing order gets the
// failure again instead of a device that reboots in a loop.
type record struct {
	Order   *orderRecord `json:"order,omitempty"`
	Phase   Phase        `json:"phase,omitempty"`
	Changes int          `json:"changes,omitempty"`
	Failed  []failure    `json:"failed,omitempty"`
	// Reason is why the current order is being undone (a failed health
	// check), kept across the reboot that undoes it.
	Reason string `json:"reason,omitempty"`
	// Resets counts the resets the agent asked for, per image: the state
	// loop guard that outlives the agent (see allowReset).
	Resets []resetCount `json:"resets,omitempty"`
	// OrderCounter is the counter of the last signed order taken: an
	// order whose counter is not above it is a replay.
	OrderCounter uint64 `json:"order_counter,omitempty"`
	// OrderKey is otaserve's order key (base64 of its 32 bytes) as a
	// device in migration mode learned it from an order, endorsed by one
	// of its image keys: from then on the module takes signed orders only,
	// across restarts.
	OrderKey string `json:"order_key,omitempty"`
	// StatementIssued is when the last release statement the agent took
	// was issued (the first module's record keeps it): after a restart an
	// older statement is a replay, on a device without a clock too.
	StatementIssued int64 `json:"statement_issued,omitempty"`
}

// resetCount is the resets asked for on account of one image: Count in
// all, and Same of them in a row from the engine state State, that is
// resets after which the engine came back to the state it was in.
type resetCount struct {
	Image string `json:"image"`
	Count int    `json:"count"`
	State string `json:"state,omitempty"`
	Same  int    `json:"same,omitempty"`
}

// orderRecord is the part of an order the agent needs after a restart.
type orderRecord struct {
	ID       int64  `json:"id"`
	Version  string `json:"version"`
	URL      string `json:"url"`
	Digest   string `json:"digest,omitempty"`
	Size     int64  `json:"size"`
	Counter  uint32 `json:"counter,omitempty"`
	Campaign string `json:"campaign,omitempty"`
	From     string `json:"from,omitempty"` // the version that ran when it arrived
}

// failure is an image that failed on this device.
type failure struct {
	Version string     `json:"version"`
	Digest  string     `json:"digest,omitempty"`
	Step    cloud.Step `json:"step"`
	Reason  string     `json:"reason"`
	// Kept: the image failed its health check where there is no old image
	// to return to (single bank): it runs, unconfirmed, and the agent
	// neither checks it again nor resets the device for it.
	Kept bool `json:"kept,omitempty"`
}

func newOrderRecord(o *cloud.Order, from string) *orderRecord {
	r := &orderRecord{ID: o.ID, Version: o.Data.Version, URL: o.Data.URL, Digest: digestString(o), Size: o.Data.Size, From: from}
	if x := o.Data.Otaport; x != nil {
		r.Counter, r.Campaign = x.SecurityCounter, x.Campaign
	}
	return r
}

// failedBefore returns the failure of the version o orders, if it failed
// here. What failed is what counts: a version whose image ran and failed
// (its health check, the bootloader's refusal, the loop guard) fails again
// whatever file carries it (ECDSA signatures differ at every signing), so
// the version is matched, and the operator publishes a new version to
// retry; bytes that are not the image signed fail as those bytes, so only
// the same file (its digest) is refused again, and a forged or corrupted
// file never blocks the genuine one. A download that failed is not
// remembered at all (see remember).
func (rec *record) failedBefore(o *cloud.Order) (failure, bool) {
	digest := digestString(o)
	for _, f := range rec.Failed {
		if f.Step == cloud.StepVerifyFailed {
			if f.Digest != "" && f.Digest == digest {
				return f, true
			}
			continue
		}
		if image.SameVersion(f.Version, o.Data.Version) {
			return f, true
		}
	}
	return failure{}, false
}

// maxReason is the most of a failure's reason the record keeps: the device
// record must fit the params partition (docs/engine.md), and the cloud
// clips a report to 256 bytes anyway.
const maxReason = 160

// remember records a failure of the current order, newest last. A failed
// download is the network's failure, not the image's: the order may come
// again and is carried out again.
func (rec *record) remember(f failure) {
	if f.Step == cloud.StepDownloadFailed {
		return
	}
	f.Reason = clip(f.Reason, maxReason)
	rec.Failed = append(rec.Failed, f)
	if len(rec.Failed) > maxFailures {
		rec.Failed = rec.Failed[len(rec.Failed)-maxFailures:]
	}
}

// kept returns the failure of the running image v when it failed its
// health check and was kept because nothing else can run.
func (rec *record) kept(v string) (failure, bool) {
	for i := len(rec.Failed) - 1; i >= 0; i-- {
		if f := rec.Failed[i]; f.Kept && image.SameVersion(f.Version, v) {
			return f, true
		}
	}
	return failure{}, false
}

// resets returns the reset count of image v, added (with nothing counted)
// when it has none; the oldest count goes when there are too many.
func (rec *record) resets(v string) *resetCount {
	for i := range rec.Resets {
		if image.SameVersion(rec.Resets[i].Image, v) {
			return &rec.Resets[i]
		}
	}
	rec.Resets = append(rec.Resets, resetCount{Image: v})
	if len(rec.Resets) > maxCounts {
		rec.Resets = rec.Resets[len(rec.Resets)-maxCounts:]
	}
	return &rec.Resets[len(rec.Resets)-1]
}

// forgetResets drops the reset count of image v: it was confirmed, or a
// new order for it starts afresh (an order for a version that failed here
// is refused before, so this opens no loop).
func (rec *record) forgetResets(v string) {
	rec.Resets = slices.DeleteFunc(rec.Resets, func(c resetCount) bool { return image.SameVersion(c.Image, v) })
}

// notes is where the agent's record lives: the caller's note in the
// device's one record, which the engine writes whole in one operation
// (*engine.Engine).
type notes interface {
	Note(ctx context.Context) ([]byte, error)
	SetNote(ctx context.Context, note []byte) error
}

// loadRecord reads the agent's record; a missing or unreadable one is an
// empty record (a record we cannot read must not block upgrades).
func loadRecord(ctx context.Context, n notes) (record, error) {
	b, err := n.Note(ctx)
	if err != nil {
		return record{}, fmt.Errorf("read the agent's record: %w", err)
	}
	var rec record
	if len(b) == 0 || json.Unmarshal(b, &rec) != nil {
		return record{}, nil
	}
	return rec, nil
}

// saveRecord writes the agent's record.
func saveRecord(ctx context.Context, n notes, rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode the agent's record: %w", err)
	}
	if err := n.SetNote(ctx, b); err != nil {
		return fmt.Errorf("save the agent's record: %w", err)
	}
	return nil
}

// clip shortens s to at most n runes, marking the cut.
func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
