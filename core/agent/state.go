package agent

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// stateKey is the agent's record in the port's key-value store, beside the
// engine's.
const stateKey = "otaport.agent"

// MaxStateChanges is how many persisted state changes one order may go
// through before the agent gives it up: Mender's state-loop guard, with
// Mender's number. An upgrade takes about six (accepted, installed,
// rebooting, checking, done); a device that keeps rebooting into the same
// step runs into the guard instead of looping for ever.
const MaxStateChanges = 28

// maxFailures is how many failed images the agent remembers.
const maxFailures = 8

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
	Order    *orderRecord `json:"order,omitempty"`
	Phase    Phase        `json:"phase,omitempty"`
	Changes  int          `json:"changes,omitempty"`
	Failed   []failure    `json:"failed,omitempty"`
	MaxCount uint32       `json:"counter,omitempty"` // highest security counter confirmed
	// Reason is why the current order is being undone (a failed health
	// check), kept across the reboot that undoes it.
	Reason string `json:"reason,omitempty"`
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
}

func newOrderRecord(o *cloud.Order, from string) *orderRecord {
	r := &orderRecord{ID: o.ID, Version: o.Data.Version, URL: o.Data.URL, Digest: digestString(o), Size: o.Data.Size, From: from}
	if x := o.Data.Otaport; x != nil {
		r.Counter, r.Campaign = x.SecurityCounter, x.Campaign
	}
	return r
}

// failedBefore returns the failure of the version o orders, if it failed
// here. The version, not the image's digest, is what counts: a rebuilt
// image of a failed version (ECDSA signatures differ at every signing) is
// the same version to the operator, who publishes a new version to retry.
func (rec *record) failedBefore(o *cloud.Order) (failure, bool) {
	for _, f := range rec.Failed {
		if image.SameVersion(f.Version, o.Data.Version) {
			return f, true
		}
	}
	return failure{}, false
}

// remember records a failure of the current order, newest last.
func (rec *record) remember(f failure) {
	rec.Failed = append(rec.Failed, f)
	if len(rec.Failed) > maxFailures {
		rec.Failed = rec.Failed[len(rec.Failed)-maxFailures:]
	}
}

// loadRecord reads the agent's record; a missing or unreadable one is an
// empty record (a record we cannot read must not block upgrades).
func loadRecord(ctx context.Context, kv hal.KV) (record, error) {
	b, ok, err := kv.Get(ctx, stateKey)
	if err != nil {
		return record{}, fmt.Errorf("read agent state %q: %w", stateKey, err)
	}
	var rec record
	if !ok || json.Unmarshal(b, &rec) != nil {
		return record{}, nil
	}
	return rec, nil
}

// saveRecord writes the agent's record.
func saveRecord(ctx context.Context, kv hal.KV, rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode agent state: %w", err)
	}
	if err := kv.Set(ctx, stateKey, b); err != nil {
		return fmt.Errorf("save agent state %q: %w", stateKey, err)
	}
	return nil
}
