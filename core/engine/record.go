package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// recordKey is the key of the device's one record in the port's KV store:
// the engine's state and its caller's note (the agent's order and guards),
// written together by one KV Set, so that no power cut can leave one ahead
// of the other.
const recordKey = "otaport.device"

// The keys of the two records an earlier otaport kept, the engine's (of
// format 1) and the agent's. They are read once, when recordKey is missing,
// and removed by the first save.
const (
	legacyEngineKey = "otaport.engine"
	legacyAgentKey  = "otaport.agent"
)

// recordFormat is the version of the persisted record; legacyFormat the
// engine's record of an earlier otaport, which this one reads. A record of
// another format is not trusted: the engine starts from idle (keeping
// nothing that could block an upgrade).
const (
	recordFormat = 2
	legacyFormat = 1
)

// record is the persisted state of the device: one JSON value under
// recordKey, written with one KV Set, which the port makes atomic across a
// power cut. JSON keeps it readable with `otarun status --json` and
// extensible; its size (a few hundred bytes, most of it the verifier's
// state during a download and the caller's note) fits the params partition
// of the smallest catalog board. The bootloader's own state (which slot
// runs, the security counter) is not copied here: hal.BootState has it.
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
	// Patch is, for a delta image, the patch decoder's checkpoint at
	// Offset (core/delta, at most delta.MaxCheckpointSize bytes, about
	// 240): a resume continues the decoder there.
	Patch []byte `json:"patch,omitempty"`

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

	// Base is the state that stood before this install began (nil when
	// the record is not an install's, or none stood): an interrupted
	// download that is dropped returns to it, so that dropping a
	// download leaves the device as it was, a rollback to the image the
	// running one replaced included.
	Base *base `json:"base,omitempty"`

	// Note is the caller's part of the record (the agent's order in hand
	// and its guards), kept as it is given (Engine.SetNote).
	Note json.RawMessage `json:"note,omitempty"`

	// draft is set on the record of a new install until it is first
	// saved, just before the install's first change to the slot: until
	// then the persisted record (a pending install among others) is what
	// it was, and a refusal leaves it so. Never persisted.
	draft bool
	// was is the persisted state while the record is a draft, and
	// announce the message of the draft's first save.
	was      State
	announce string
	// legacy is set on a record read from the legacy keys: the save
	// that writes it under recordKey removes them.
	legacy bool
}

// base is what a record keeps of the state before an install: only a state
// whose image can still be rolled back or confirmed (testing, confirmed)
// needs keeping; after any other, a dropped download leaves the engine
// idle, where a rollback is refused as it would have been. It is small on
// purpose: the whole record must fit one area of the smallest params
// partition.
type base struct {
	State    State  `json:"state"`
	Image    string `json:"image,omitempty"`
	Previous string `json:"previous,omitempty"`
	Slot     string `json:"slot,omitempty"`
	Counter  uint32 `json:"counter,omitempty"`
}

// baseOf returns what stands of r when a new install begins.
func baseOf(r record) *base {
	switch r.State {
	case Testing, Confirmed:
		return &base{State: r.State, Image: r.Image, Previous: r.Previous, Slot: r.Slot, Counter: r.Counter}
	case Downloading, Verifying:
		// Replaced by the new install: what stood before it stands.
		return r.Base
	}
	return nil
}

// restore returns the record of the state b describes, keeping what
// outlives attempts.
func (r *record) restore(b *base) record {
	n := r.fresh()
	if b == nil {
		n.State = Idle
		return n
	}
	n.State, n.Image, n.Previous, n.Slot, n.Counter = b.State, b.Image, b.Previous, b.Slot, b.Counter
	return n
}

// fresh returns a record for a new attempt that keeps what must outlive
// attempts.
func (r *record) fresh() record {
	return record{Format: recordFormat, Seq: r.Seq, Note: r.Note, legacy: r.legacy}
}

// clearDownload drops the resumable part of the record.
func (r *record) clearDownload() {
	r.Verifier, r.DigestState, r.Patch = nil, nil, nil
}

// decodeRecord parses a persisted record. A record that does not parse, or
// of another format, is an error; the caller decides what to do.
func decodeRecord(b []byte) (record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("engine state: %w", err)
	}
	if r.Format != recordFormat && r.Format != legacyFormat {
		return record{}, fmt.Errorf("engine state: format %d, this engine reads formats %d and %d", r.Format, legacyFormat, recordFormat)
	}
	if r.Base != nil {
		switch r.Base.State {
		case Testing, Confirmed:
		default:
			return record{}, fmt.Errorf("engine state: base state %q", r.Base.State)
		}
	}
	if len(r.Note) > 0 && !json.Valid(r.Note) {
		return record{}, fmt.Errorf("engine state: note is not JSON")
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
// running image). The caller's note survives an unreadable engine part
// only when it is readable itself.
func (e *Engine) load(ctx context.Context) (record, error) {
	b, ok, err := e.kv.Get(ctx, recordKey)
	if err != nil {
		return record{}, fmt.Errorf("read the device record (kv %q): %w", recordKey, err)
	}
	if !ok {
		return e.loadLegacy(ctx)
	}
	r, err := decodeRecord(b)
	if err != nil {
		e.log.Warn("device record unreadable, starting from idle", "key", recordKey, "err", err)
		return record{Format: recordFormat, State: Idle}, nil
	}
	return r, nil
}

// loadLegacy reads the two records of an earlier otaport into one.
func (e *Engine) loadLegacy(ctx context.Context) (record, error) {
	r := record{Format: recordFormat, State: Idle}
	eb, eok, err := e.kv.Get(ctx, legacyEngineKey)
	if err != nil {
		return record{}, fmt.Errorf("read the engine record of an earlier version (kv %q): %w", legacyEngineKey, err)
	}
	ab, aok, err := e.kv.Get(ctx, legacyAgentKey)
	if err != nil {
		return record{}, fmt.Errorf("read the agent record of an earlier version (kv %q): %w", legacyAgentKey, err)
	}
	if eok {
		if lr, err := decodeRecord(eb); err != nil {
			e.log.Warn("engine record of an earlier version unreadable, starting from idle", "key", legacyEngineKey, "err", err)
		} else {
			r = lr
		}
	}
	if aok && json.Valid(ab) {
		r.Note = ab
	}
	r.legacy = eok || aok
	return r, nil
}

// maxRecordError is the most of an error the record keeps: the caller gets
// the whole error, and the record must fit the smallest params partition.
const maxRecordError = 512

// save persists r (one atomic KV Set), then removes the legacy records r
// was read from: a power cut between the two leaves them, and recordKey,
// which is read first, stands.
func (e *Engine) save(ctx context.Context, r *record) error {
	r.Format = recordFormat
	r.Seq++
	r.Error = clip(r.Error, maxRecordError)
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode the device record: %w", err)
	}
	if err := e.kv.Set(ctx, recordKey, b); err != nil {
		return fmt.Errorf("persist engine state %s (kv %q, %d bytes): %w", r.State, recordKey, len(b), err)
	}
	if r.legacy {
		for _, k := range []string{legacyEngineKey, legacyAgentKey} {
			if err := e.kv.Set(ctx, k, nil); err != nil {
				e.log.Warn("remove a record of an earlier version", "key", k, "err", err)
			}
		}
		r.legacy = false
	}
	return nil
}

// Note returns the caller's part of the device record (nil when there is
// none): what the agent keeps of its order and its guards, beside the
// engine's state in the same record.
func (e *Engine) Note(ctx context.Context) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("note: %w", err)
	}
	return r.Note, nil
}

// SetNote replaces the caller's part of the device record, a JSON value
// (nil removes it). The record is written whole, in one KV Set, with the
// engine's state as it stands.
func (e *Engine) SetNote(ctx context.Context, note []byte) error {
	if len(note) > 0 && !json.Valid(note) {
		return fmt.Errorf("set note: not a JSON value")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.load(ctx)
	if err != nil {
		return fmt.Errorf("set note: %w", err)
	}
	r.Note = note
	if err := e.save(ctx, &r); err != nil {
		return fmt.Errorf("set note: %w", err)
	}
	return nil
}

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
