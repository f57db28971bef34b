package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
)

// newProgress returns how install reports progress: with --json one event
// per line (progress at most once per percent, and every 2 s at least); on
// a terminal a progress bar; otherwise the state changes as lines. finish
// ends the bar's line; it may be called more than once.
func newProgress(e *env) (engine.Observer, func()) {
	if e.opts.json {
		enc := json.NewEncoder(e.stdout)
		var mu sync.Mutex
		return engine.Throttle(engine.ObserverFunc(func(ev engine.Event) {
			mu.Lock()
			defer mu.Unlock()
			_ = enc.Encode(ev)
		}), 2*time.Second, nil), func() {}
	}
	if f, ok := e.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b := &bar{w: e.stdout, start: time.Now()}
		return engine.Throttle(b, 200*time.Millisecond, nil), b.finish
	}
	return engine.ObserverFunc(func(ev engine.Event) {
		if ev.Kind == event.State {
			fmt.Fprintf(e.stdout, "%s: %s\n", ev.State, ev.Message)
		}
	}), func() {}
}

// bar draws one line that it rewrites in place.
type bar struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	drawn bool
}

const barWidth = 30

func (b *bar) Event(ev engine.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev.Kind {
	case event.Progress:
		rate := float64(ev.Offset) / max(time.Since(b.start).Seconds(), 1e-3)
		var line string
		if ev.Percent >= 0 {
			n := ev.Percent * barWidth / 100
			line = fmt.Sprintf("[%s%s] %3d%% %s / %s  %s/s", strings.Repeat("#", n), strings.Repeat(" ", barWidth-n), ev.Percent, mib(ev.Offset), mib(ev.Total), mib(int64(rate)))
		} else {
			line = fmt.Sprintf("%s  %s/s", mib(ev.Offset), mib(int64(rate)))
		}
		fmt.Fprintf(b.w, "\r%s\x1b[K", line)
		b.drawn = true
	default:
		b.endLine()
		if ev.Kind == event.State {
			fmt.Fprintf(b.w, "%s: %s\n", ev.State, ev.Message)
			b.start = time.Now()
		}
	}
}

func (b *bar) endLine() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

func (b *bar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.endLine()
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
