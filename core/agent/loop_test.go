package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
)

// countingPort counts the resets an agent asks of its port. Past fuse
// resets it refuses, so that an agent that loops ends its loop with an
// error (and the test goes on to count) instead of running until a
// deadline. With lost set a reset does nothing at all: the bootloader does
// not run, as when a board's reset line is not wired.
type countingPort struct {
	*boot.Platform
	reboots atomic.Int32
	fuse    int32
	lost    bool
}

func (p *countingPort) Reboot(ctx context.Context) (hal.RebootResult, error) {
	if n := p.reboots.Add(1); n > p.fuse {
		return hal.RebootResult{}, fmt.Errorf("test fuse: reset %d refused (the agent loops)", n)
	}
	if p.lost {
		return hal.RebootResult{Action: boot.ActionNone, Detail: "the reset was lost"}, nil
	}
	return p.Platform.Reboot(ctx)
}

// failures returns the failure reports among ms.
func failures(ms []msg) []string {
	var out []string
	for _, m := range ms {
		if m.kind != cloud.KindProgress {
			continue
		}
		if p, err := cloud.ParseProgress(m.payload); err == nil && p.Params.Step.Failed() {
			out = append(out, p.Params.Desc)
		}
	}
	return out
}

// Issue 9, reproduction 2: on a single-bank board an image that fails its
// health check cannot be left (the copy over app destroyed the old image).
// The agent reported a rollback that never happened and rebooted until its
// state-change guard gave up; after a restart it rebooted without end. It
// must report the failure once, with the health check's reason, keep the
// image running, and never reset the device for it again, across restarts.
func TestAgent_SingleBankHealthFailure_ReportsOnceAndNeverLoops(t *testing.T) {
	var boards []string
	for _, b := range haltest.Boards() {
		if l, _ := haltest.Layout(b); l.Scheme == hal.SingleBank {
			boards = append(boards, b)
		}
	}
	if len(boards) == 0 {
		t.Fatal("core/hal/haltest holds no single-bank board")
	}
	for _, board := range boards {
		t.Run(board, func(t *testing.T) {
			r := newRigOn(t, board)
			port := &countingPort{Platform: r.port, fuse: 20}
			r.dev = port
			stop := r.start(r.config())
			i := r.waitFor("inform 1.0.0+0 at start", 0, informOf("1.0.0+0"))
			r.order(1001, "1.2.0", nil)
			j := r.waitFor("a failure report", i, func(m msg) bool { return len(failures([]msg{m})) > 0 })
			j = r.waitFor("inform of what runs after the failure", j, informOf("1.2.0+0"))
			stop()
			if n := port.reboots.Load(); n != 1 {
				t.Errorf("%d resets for one order, want 1 (into the new image)", n)
			}

			// Restarted agents: nothing left to do for 1.2.0.
			for k := 1; k <= 2; k++ {
				before := port.reboots.Load()
				stop := r.start(r.config())
				j = r.waitFor(fmt.Sprintf("inform after restart %d", k), j, informOf("1.2.0+0"))
				stop()
				if n := port.reboots.Load() - before; n != 0 {
					t.Errorf("restart %d: the agent reset the device %d time(s), want none", k, n)
				}
			}

			fs := failures(r.since(i))
			if len(fs) != 1 {
				t.Errorf("%d failure reports, want exactly 1: %q", len(fs), fs)
			}
			for _, f := range fs {
				if !strings.Contains(f, "self-test failed in 1.2.0+0 after 1.0.0+0") {
					t.Errorf("failure report %q does not give the health check's reason", f)
				}
				if strings.Contains(f, "rolled back") {
					t.Errorf("failure report %q claims a rollback, which a single-bank board cannot do", f)
				}
			}
			r.mu.Lock()
			var claims []agent.Event
			for _, ev := range r.events {
				if ev.Kind == event.RolledBack || ev.State == string(engine.RolledBack) {
					claims = append(claims, ev)
				}
			}
			r.mu.Unlock()
			if len(claims) > 0 {
				t.Errorf("%d events claim a rollback, which a single-bank board cannot do; the first: %+v", len(claims), claims[0])
			}
			if s := r.running(); s.Version != "1.2.0+0" || s.Confirmed {
				t.Errorf("the running slot is %+v, want 1.2.0+0, not confirmed", s)
			}
		})
	}
}

// The guard against state loops is persisted: a reset that changes nothing
// (here one that never happens) is asked at most boot_attempts+1 times in a
// row (a count that a restart does not reset: the state did not change),
// and at most MaxRebootsPerImage times for one image, however often the
// agent is restarted. Without an order (an install by hand) the device
// is left as it is; with one, the order fails naming the guard.
func TestAgent_ResetGuardHoldsAcrossRestarts(t *testing.T) {
	// b-l475e-iot01a (3 boot attempts) runs into the count per image,
	// nrf52840-dk (1) into the count in a row.
	for _, board := range []string{"b-l475e-iot01a", "nrf52840-dk"} {
		for _, withOrder := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/order=%v", board, withOrder), func(t *testing.T) {
				r := newRigOn(t, board)
				port := &countingPort{Platform: r.port, fuse: 50, lost: true}
				r.dev = port
				l, _ := haltest.Layout(board)
				inRow := int32(l.BootAttempts + 1)
				j := 0
				if withOrder {
					stop := r.start(r.config())
					j = r.waitFor("inform 1.0.0+0", 0, informOf("1.0.0+0"))
					r.order(1001, "1.1.0", nil)
					j = r.waitFor("the guard's failure report", j, progressOf(cloud.StepUpgradeFailed, "state loop guard"))
					j = r.waitFor("inform after the failure", j, informOf("1.0.0+0"))
					stop()
				} else {
					r.installByHand("1.1.0")
					stop := r.start(r.config())
					j = r.waitFor("inform at the first start", j, informOf("1.0.0+0"))
					stop()
				}
				if n, want := port.reboots.Load(), min(inRow, agent.MaxRebootsPerImage); n != want {
					t.Errorf("first run: %d resets that changed nothing, want %d (boot_attempts+1 = %d in a row, %d per image)",
						n, want, inRow, agent.MaxRebootsPerImage)
				}
				for k := 2; k <= 4; k++ {
					stop := r.start(r.config())
					j = r.waitFor(fmt.Sprintf("inform at start %d", k), j, informOf("1.0.0+0"))
					stop()
				}
				// Later starts add none: the engine never left its state,
				// and the order, if any, failed.
				if n, want := port.reboots.Load(), min(inRow, agent.MaxRebootsPerImage); n != want {
					t.Errorf("%d resets for image 1.1.0 over 4 starts, want %d", n, want)
				}
			})
		}
	}
}

// An image installed by hand on a single-bank board (no order) that fails
// its health check is kept as well: no reset, no rollback claimed, and a
// restarted agent does not run the check again.
func TestAgent_SingleBankHealthFailureWithoutOrder_KeepsTheImage(t *testing.T) {
	r := newRigOn(t, "stm32f407-disco")
	port := &countingPort{Platform: r.port, fuse: 20}
	r.dev = port
	r.installByHand("1.2.0")
	if _, err := r.port.Reboot(context.Background()); err != nil { // the user's power-on: the copy
		t.Fatal(err)
	}
	j := 0
	for k := 1; k <= 2; k++ {
		stop := r.start(r.config())
		j = r.waitFor(fmt.Sprintf("inform at start %d", k), j, informOf("1.2.0+0"))
		stop()
	}
	if n := port.reboots.Load(); n != 0 {
		t.Errorf("%d resets, want none", n)
	}
	var healthChecks, failed int
	r.mu.Lock()
	for _, ev := range r.events {
		switch {
		case ev.Kind == event.Health:
			healthChecks++
		case ev.Kind == event.Failed:
			failed++
			if !strings.Contains(ev.Error, "1.2.0+0 stays, unconfirmed (single bank") {
				t.Errorf("failure %q does not say the image stays, and why", ev.Error)
			}
		case ev.Kind == event.RolledBack || ev.State == string(engine.RolledBack):
			t.Errorf("event %+v claims a rollback", ev)
		}
	}
	r.mu.Unlock()
	if healthChecks != 1 || failed != 1 {
		t.Errorf("%d health checks and %d failures over two starts, want 1 and 1", healthChecks, failed)
	}
	if s := r.running(); s.Version != "1.2.0+0" || s.Confirmed {
		t.Errorf("the running slot is %+v, want 1.2.0+0, not confirmed", s)
	}
}

// installByHand installs version v as `otarun install` does, with no order:
// the engine alone, up to "installed, reboot to apply".
func (r *rig) installByHand(v string) {
	r.t.Helper()
	path := filepath.Join(r.dir, v+".img")
	if err := os.WriteFile(path, r.sign(v), 0o644); err != nil {
		r.t.Fatal(err)
	}
	eng, err := engine.New(r.port, r.port, engine.Options{Keys: r.keys()})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := eng.Install(context.Background(), engine.Source{URL: path}); err != nil {
		r.t.Fatal(err)
	}
}
