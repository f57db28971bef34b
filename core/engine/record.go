package engine

import (
	"context"
	"encoding/json"
	"fmt"
)

// stateKey is the key of the engine's record in the port's KV store.
const stateKey = "otaport.engine"

// recordFormat is the version of the persisted record. A record of another
// format is not trusted: the engine starts from idle (keeping nothing that
// could block an upgrade).
const recordFormat = 1

// record is the persisted state of the engine: one JSON value under
// stateKey, written with one KV Set, which the port makes atomic across a
// power cut. JSON keeps it readable with `otarun status --json` and
// extensible; its size (a few hundred bytes, most of it the verifier's
// state during a download) fits the params partition of the smallest
// catalog board.
type record struct {
	Format int    `json:"format"`
	Seq    uint64 `json:"seq"` // incremented at every save, for logs
	State  State  `json:"state"`

	// The order: where from, what the cloud announced.
	Source    string `json:"source,omitempty"`
	Digest    string `json:"digest,omitempty"` // "sha256:hex" or "md5:hex", normalised
	Announced string `json:"announced,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`

	// The download: Size is the size the order announced (0: none), Total
	// the size of the file as the source gives it (0 while unknown),
	// Offset the bytes written and covered by Verifier and
	// DigestState, the saved hash states at that offset. ETag and
	// LastModified are the source's validators: a resume sends them in
	// If-Range so that a changed file starts over.
	Size         int64  `json:"size,omitempty"`
	Total        int64  `json:"total,omitempty"`
	Offset       int64  `json:"offset,omitempty"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Verifier     []byte `json:"verifier,omitempty"`
	DigestState  []byte `json:"digest_state,omitempty"`

	// Slot is the update slot the image goes to; Previous the version that
	// ran when the install started.
	Slot     string `json:"slot,omitempty"`
	Previous string `json:"previous,omitempty"`

	// The new image, once its header (Image) and its TLVs (ImageSize,
	// Counter) have arrived.
	Image     string `json:"image,omitempty"`
	ImageSize int64  `json:"image_size,omitempty"`
	Counter   uint32 `json:"counter,omitempty"`

	// Error is why the engine is in Failed or RolledBack, or the last
	// error of an interrupted download.
	Error string `json:"error,omitempty"`
	// Reboot is set when the state takes effect at the next reboot
	// (Installed, or a rollback of a running image).
	Reboot bool `json:"reboot,omitempty"`

	// MinCounter is the lowest security counter an image may have: the
	// highest counter of an image confirmed on this device. It outlives
	// every install.
	MinCounter uint32 `json:"min_counter,omitempty"`

	// draft is set on the record of a new install until it is first
	// saved, just before the install's first change to the slot: until
	// then the persisted record (a pending install among others) is what
	// it was, and a refusal leaves it so. Never persisted.
	draft bool
	// was is the persisted state while the record is a draft, and
	// announce the message of the draft's first save.
	was      State
	announce string
}

// fresh returns a record for a new attempt that keeps what must outlive
// attempts.
func (r *record) fresh() record {
	return record{Format: recordFormat, Seq: r.Seq, MinCounter: r.MinCounter}
}

// clearDownload drops the resumable part of the record.
func (r *record) clearDownload() {
	r.Verifier, r.DigestState = nil, nil
}

// decodeRecord parses a persisted record. A record that does not parse, or
// of another format, is an error; the caller decides what to do.
func decodeRecord(b []byte) (record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("engine state: %w", err)
	}
	if r.Format != recordFormat {
		return record{}, fmt.Errorf("engine state: format %d, this engine reads format %d", r.Format, recordFormat)
	}
	switch r.State {
	case Idle, Downloading, Verifying, Installed, Testing, Confirmed, RolledBack, Failed:
	default:
		return record{}, fmt.Errorf("engine state: unknown state %q", r.State)
	}
	if r.Offset < 0 || r.Size < 0 || r.Total < 0 || r.ImageSize < 0 {
		return record{}, fmt.Errorf("engine state: negative offset or size")
	}
	return r, nil
}

// load reads the record. A missing record is Idle; a record that cannot be
// read is logged and taken as Idle too, so that a corrupt record never
// blocks an upgrade (the bootloader's own parameters still protect the
// running image).
func (e *Engine) load(ctx context.Context) (record, error) {
	b, ok, err := e.kv.Get(ctx, stateKey)
	if err != nil {
		return record{}, fmt.Errorf("read engine state (kv %q): %w", stateKey, err)
	}
	if !ok {
		return record{Format: recordFormat, State: Idle}, nil
	}
	r, err := decodeRecord(b)
	if err != nil {
		e.log.Warn("engine state unreadable, starting from idle", "key", stateKey, "err", err)
		return record{Format: recordFormat, State: Idle}, nil
	}
	return r, nil
}

// save persists r (one atomic KV Set).
func (e *Engine) save(ctx context.Context, r *record) error {
	r.Format = recordFormat
	r.Seq++
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode engine state: %w", err)
	}
	if err := e.kv.Set(ctx, stateKey, b); err != nil {
		return fmt.Errorf("persist engine state %s (kv %q, %d bytes): %w", r.State, stateKey, len(b), err)
	}
	return nil
}
