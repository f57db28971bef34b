package engine

import (
	"sync"
	"time"

	"github.com/otaport/otaport/core/event"
)

// Event is one thing the engine reports while it works. It marshals to the
// JSON that `otarun install --json` prints, one event a line.
type Event struct {
	// Kind is event.State, event.Progress or event.Error.
	Kind  event.Kind `json:"event"`
	State State      `json:"state"`
	// Offset and Total are the bytes written so far and the size of the
	// download (0 while unknown).
	Offset int64 `json:"offset,omitempty"`
	Total  int64 `json:"total,omitempty"`
	// Percent is Offset of Total, 0 to 100, or -1 while Total is unknown.
	Percent int `json:"percent"`
	// Version is the new image's version, once its header has arrived.
	Version string `json:"version,omitempty"`
	// Message says what happened, in words.
	Message string `json:"message,omitempty"`
	// Error is the error of an event.Error event.
	Error string `json:"error,omitempty"`
}

// Observer receives the engine's events, in order, on the goroutine that
// runs the engine: it must not block for long.
type Observer interface {
	Event(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Event calls f(ev).
func (f ObserverFunc) Event(ev Event) { f(ev) }

// percent returns off of total in whole percent, -1 when total is unknown.
func percent(off, total int64) int {
	if total <= 0 {
		return -1
	}
	if off >= total {
		return 100
	}
	return int(off * 100 / total)
}

// Throttle returns an Observer that passes every state and error event to o
// but progress events only when the percentage has grown since the last one
// it passed, or when every has gone by since then (a heartbeat while a slow
// download stays within one percent), and always the last one (100 %).
// That is the cloud's rule for progress reports: at most once per percent,
// at least every few seconds. now is the clock (nil: time.Now), so tests
// need no wall clock.
func Throttle(o Observer, every time.Duration, now func() time.Time) Observer {
	if now == nil {
		now = time.Now
	}
	return &throttle{o: o, every: every, now: now, last: -1}
}

type throttle struct {
	mu    sync.Mutex
	o     Observer
	every time.Duration
	now   func() time.Time
	last  int // percent of the last progress event passed
	at    time.Time
	off   int64
}

func (t *throttle) Event(ev Event) {
	t.mu.Lock()
	pass := true
	switch ev.Kind {
	case event.Progress:
		now := t.now()
		moved := ev.Offset != t.off
		due := t.at.IsZero() || now.Sub(t.at) >= t.every
		pass = moved && (ev.Percent > t.last || due)
		if pass {
			t.last, t.at, t.off = ev.Percent, now, ev.Offset
		}
	case event.State:
		// A new step counts afresh.
		t.last, t.at, t.off = -1, time.Time{}, 0
	}
	t.mu.Unlock()
	if pass {
		t.o.Event(ev)
	}
}
