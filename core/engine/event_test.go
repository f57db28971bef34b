package engine_test

import (
	"slices"
	"testing"
	"time"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
)

func TestThrottle_OncePerPercentAndAHeartbeat(t *testing.T) {
	now := time.Unix(1000, 0)
	rec := &events{}
	o := engine.Throttle(rec, 5*time.Second, func() time.Time { return now })
	progress := func(off int64, dt time.Duration) {
		now = now.Add(dt)
		o.Event(engine.Event{Kind: event.Progress, Offset: off, Total: 1000, Percent: int(off * 100 / 1000)})
	}
	o.Event(engine.Event{Kind: event.State, State: engine.Downloading})
	progress(1, 0)    // 0 %: first, passes
	progress(2, 0)    // 0 %: same percent, not due
	progress(10, 0)   // 1 %: passes
	progress(11, 0)   // 1 %
	progress(12, 6e9) // 1 %, but 6 s since the last: heartbeat passes
	progress(12, 6e9) // no progress at all: dropped
	progress(999, 0)  // 99 %
	progress(1000, 0) // 100 %
	o.Event(engine.Event{Kind: event.Error, State: engine.Failed, Error: "x"})
	var got []int64
	for _, ev := range rec.ev {
		if ev.Kind == event.Progress {
			got = append(got, ev.Offset)
		}
	}
	if want := []int64{1, 10, 12, 999, 1000}; !slices.Equal(got, want) {
		t.Fatalf("passed progress at %v, want %v", got, want)
	}
	if n := len(rec.ev); n != 7 {
		t.Fatalf("%d events passed, want 7 (state, 5 progress, error)", n)
	}
}
