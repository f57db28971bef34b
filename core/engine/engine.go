// Package engine is the upgrade state machine of otaport: it downloads an
// image from a file or an http(s) URL, hashes and verifies it as it streams
// through a port (hal.Platform) into the update slot, reads it back, and only
// then asks the bootloader to boot it; after the reboot it tells a trial
// from a fallback, and confirms or rolls back.
//
// Every step is announced by a state persisted in the port's key-value store
// (the board's params partition) before the step runs, so a crash or a power
// cut between any two steps leaves a state that Recover reconciles with what
// the bootloader did, and a download that Resume continues from its last
// checkpoint. A refused or failed attempt leaves nothing that blocks the next
// one (the failing of AliOS Things issue #981).
//
// The engine does not talk to the cloud, schedule upgrades or run health
// checks (that is core/agent), and it never imports a port: it is given one.
// docs/engine.md describes the states and the checks.
package engine

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// State is where an upgrade stands. It is persisted before the step it
// announces.
type State string

// The states of the upgrade state machine (docs/engine.md has the diagram).
const (
	// Idle: no upgrade has been started on this device.
	Idle State = "idle"
	// Downloading: bytes are being written to the update slot; the record
	// holds the offset and the verifier's state of the last checkpoint.
	Downloading State = "downloading"
	// Verifying: every byte is written; the slot is being read back and
	// checked before SetBoot.
	Verifying State = "verifying"
	// Installed: the image verified and SetBoot asked the bootloader to
	// boot it; a reboot applies it.
	Installed State = "installed"
	// Testing: the new image runs and is not confirmed yet.
	Testing State = "testing"
	// Confirmed: the new image runs and is marked good.
	Confirmed State = "confirmed"
	// RolledBack: the old image runs again (or will after a reboot).
	RolledBack State = "rolled-back"
	// Failed: the attempt stopped for the reason in Status.LastError; the
	// old image still runs and the next Install starts afresh.
	Failed State = "failed"
)

// Errors callers branch on. Errors from the engine wrap one of them (or a
// hal or image error) and say in their text what was wrong and what to do.
var (
	// ErrRefused: the image is not acceptable on this device (too large,
	// a downgrade, a security counter below the device's, another
	// version than the order announced). Nothing was marked bootable.
	ErrRefused = errors.New("image refused")
	// ErrVerify: the image failed a check of its bytes (hash, signature,
	// the digest the order announced, the read-back of the slot).
	ErrVerify = errors.New("image verification failed")
	// ErrDownload: the source could not deliver the image (HTTP status,
	// a transfer that stalled or broke more often than the retries allow,
	// a server that does not keep to its own announcements).
	ErrDownload = errors.New("download failed")
	// ErrBusy: the request does not fit the current state (an install
	// while a new image is on trial, a confirm before the reboot).
	ErrBusy = errors.New("engine busy")
	// ErrNothingToResume: Resume found no interrupted install.
	ErrNothingToResume = errors.New("nothing to resume")
	// ErrNothingToRollBack: Rollback found no image to give up and none
	// to return to: nothing was installed, the last install failed, or
	// the new image was already reverted or rolled back. What runs stays.
	ErrNothingToRollBack = errors.New("nothing to roll back")
)

// Defaults of Options.
const (
	DefaultChunkSize       = 256 << 10
	DefaultCheckpointEvery = 1 << 20
	DefaultRetries         = 5
	DefaultRetryBackoff    = time.Second
	DefaultReadTimeout     = 30 * time.Second
	// DefaultMinRate and DefaultRateWindow: 30 KiB every two minutes, far
	// below the slowest cellular link (NB-IoT's few kbit/s) and far above a
	// trickle; a 1 MiB image takes at most about 70 minutes.
	DefaultMinRate    = 256
	DefaultRateWindow = 2 * time.Minute
	maxRetryBackoff   = 30 * time.Second
)

// Options configures an Engine. The zero value works with DefaultXxx for
// every tunable; Keys must be set for Install.
type Options struct {
	// Keys are the device's public keys: an image must be signed by one of
	// them. Without keys Install refuses to run.
	Keys []crypto.PublicKey
	// DecryptKey is the device's private key for encrypted images (imgtool
	// -E): an X25519, P-256 or RSA-2048 private key, or an image.KEK (see
	// image.LoadDecryptionKey). Without it an encrypted image is refused
	// before anything is written.
	DecryptKey any
	// Clock is the device's trusted clock, nil when it has none: it checks
	// a key set's expiry (core/keyset), which a device without one skips.
	Clock func() time.Time
	// Dependencies checks an image's DEPENDENCY TLVs (image.Dependency:
	// other images of the device that must run a version first) before the
	// boot request; its error refuses the image. nil refuses every image
	// that has dependencies: this engine cannot see the device's other
	// images (the agent, which runs every module, sets it).
	Dependencies func(ctx context.Context, deps []image.Dependency) error
	// AllowDowngrade accepts an image whose version is older than or equal
	// to the running one. The security counter is checked regardless.
	AllowDowngrade bool
	// HTTPClient fetches http(s) sources; nil uses NewHTTPClient(nil).
	HTTPClient *http.Client
	// Observer receives state changes, progress and errors; nil drops them.
	Observer Observer
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// ChunkSize is the size of one write through the port, rounded up to
	// the board's write alignment.
	ChunkSize int
	// CheckpointEvery is how many bytes may be written between two
	// persisted checkpoints of the download: the most a resume after a
	// crash sends again. Each checkpoint is one write to the params
	// partition. A resume within one process (a dropped connection)
	// sends nothing again.
	CheckpointEvery int64
	// Retries is how many times in a row a transfer may fail without
	// progress before the download stops; negative means none.
	Retries int
	// RetryBackoff is the wait before the first retry; it doubles with each
	// retry in a row, up to 30 s.
	RetryBackoff time.Duration
	// ReadTimeout is how long a transfer may deliver no byte (connection,
	// response headers or body) before it counts as stalled.
	ReadTimeout time.Duration
	// MinRate is the fewest bytes per second a transfer must average over
	// each RateWindow, or it is cut as too slow (ErrTooSlow): a server that
	// trickles a byte just inside ReadTimeout would otherwise hold the
	// download forever (Uptane's slow retrieval). 0 means DefaultMinRate;
	// negative, no minimum.
	MinRate int64
	// RateWindow is the span MinRate is averaged over; 0 means
	// DefaultRateWindow.
	RateWindow time.Duration
}

// Engine runs upgrades on one device. Its methods are safe for concurrent
// use; they run one at a time.
type Engine struct {
	mu   sync.Mutex
	p    hal.Platform
	kv   hal.KV
	opts Options
	log  *slog.Logger
	http *http.Client
}

// New returns an engine over port p, keeping its state in kv (usually the
// same port: boot.Platform and plugin.Client are both). It touches nothing.
func New(p hal.Platform, kv hal.KV, opts Options) (*Engine, error) {
	if p == nil {
		return nil, fmt.Errorf("engine: no port (hal.Platform is nil)")
	}
	if kv == nil {
		return nil, fmt.Errorf("engine: no key-value store: the engine keeps its state in the port's params partition; use a port with the kv capability")
	}
	if opts.ChunkSize < 0 || opts.CheckpointEvery < 0 || opts.RetryBackoff < 0 || opts.ReadTimeout < 0 {
		return nil, fmt.Errorf("engine: negative ChunkSize, CheckpointEvery, RetryBackoff or ReadTimeout")
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.Retries == 0 {
		opts.Retries = DefaultRetries
	} else if opts.Retries < 0 {
		opts.Retries = 0
	}
	if opts.RetryBackoff == 0 {
		opts.RetryBackoff = DefaultRetryBackoff
	}
	if opts.MinRate == 0 {
		opts.MinRate = DefaultMinRate
	}
	if opts.RateWindow < 0 {
		return nil, fmt.Errorf("engine: negative RateWindow")
	}
	if opts.RateWindow == 0 {
		opts.RateWindow = DefaultRateWindow
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := opts.HTTPClient
	if client == nil {
		var err error
		if client, err = NewHTTPClient(nil); err != nil {
			return nil, err
		}
	}
	return &Engine{p: p, kv: kv, opts: opts, log: log, http: client}, nil
}

// emit hands ev to the observer, if any.
func (e *Engine) emit(ev Event) {
	if e.opts.Observer != nil {
		e.opts.Observer.Event(ev)
	}
}

// announce persists rec and then tells the observer about its state: the
// order the whole engine keeps (persist first, then act).
func (e *Engine) announce(ctx context.Context, rec *record, msg string) error {
	if err := e.save(ctx, rec); err != nil {
		return err
	}
	e.log.Info("state", "state", rec.State, "image", rec.Image, "detail", msg)
	e.emit(Event{Kind: event.State, State: rec.State, Version: rec.Image, Offset: rec.Offset, Total: rec.Total, Percent: percent(rec.Offset, rec.Total), Message: msg})
	return nil
}
