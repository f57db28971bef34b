package sequences

import (
	"context"
	"fmt"
	"time"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/tests/sequences/model"
)

// counts are what a run did, for the closing report.
type counts struct {
	steps    map[string]int // per step label
	cuts     map[string]int // per CutWhen, cuts that happened
	armed    int            // cuts armed that the command finished before
	sequence int
}

func newCounts() counts {
	return counts{steps: map[string]int{}, cuts: map[string]int{}}
}

func (c *counts) add(o counts) {
	for k, v := range o.steps {
		c.steps[k] += v
	}
	for k, v := range o.cuts {
		c.cuts[k] += v
	}
	c.armed += o.armed
	c.sequence += o.sequence
}

// failure is a broken promise at step index at of a sequence.
type failure struct {
	v  *model.Violation
	at int
	// equal is the version each imgEqual install resolved to, fired
	// whether each step's power cut happened and at the operation it was
	// armed at, for the printed commands.
	equal []string
	fired []bool
	cutAt []int
}

// runner plays one sequence on one board: the device (a flash), the model
// of what the user may expect of it, and the commands in between.
type runner struct {
	ctx context.Context
	f   *fixture
	dev *flash.Emulator
	// pl is the port over dev, kept from command to command until the
	// power goes: otarun starts a plugin per command, but the platform
	// reads its state from the flash at every call that needs it, and
	// keeping it saves verifying both slots' signatures at each command,
	// which would cost more than the rest of a step.
	pl    devicePort
	m     *model.Model
	c     counts
	equal []string
	fired []bool
	at    []int
	// agentResets counts the resets the agent asked for on account of
	// each image, across its restarts.
	agentResets map[string]int
	// agentOrder is the image of the order the agent holds, taken and
	// not finished when it stopped: a restart carries it out again.
	agentOrder *model.Image
	heldID     int64
}

// run plays steps on a clone of the board's provisioned flash and returns
// the first broken promise, or nil.
func run(ctx context.Context, f *fixture, steps []step) (*failure, counts) {
	r := &runner{
		ctx: ctx, f: f, dev: f.base.Clone(), c: newCounts(),
		m: model.New(model.Config{Reverts: f.layout.Scheme.Reverts(), BootAttempts: max(1, f.layout.BootAttempts),
			HigherOnly: f.layout.Bootloader == hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeDirectXIP}}),
		equal: make([]string, len(steps)), fired: make([]bool, len(steps)), at: make([]int, len(steps)),
		agentResets: map[string]int{},
	}
	r.m.Provisioned(factoryVersion)
	r.c.sequence = 1
	var err error
	if r.pl, err = f.platform(r.dev); err != nil {
		return &failure{v: &model.Violation{Rule: "port", Detail: err.Error()}}, r.c
	}
	for i, s := range steps {
		r.c.steps[s.label()]++
		if v := r.step(i, s); v != nil {
			return &failure{v: v, at: i, equal: r.equal, fired: r.fired, cutAt: r.at}, r.c
		}
	}
	return nil, r.c
}

// engine is the engine a command runs, as otarun builds it: one per
// command, over the port the command opened.
func (r *runner) engine(pl devicePort, allowDowngrade bool) *engine.Engine {
	eng, err := engine.New(pl, pl, engine.Options{
		Keys: r.f.keys, AllowDowngrade: allowDowngrade, HTTPClient: r.f.http,
		// Small chunks and checkpoints so that a cut lands between
		// checkpoints of these small images and a resume has work.
		ChunkSize: 1024, CheckpointEvery: 2048, Retries: -1, RetryBackoff: time.Millisecond,
	})
	if err != nil {
		panic(err) // only for options this file gets wrong
	}
	return eng
}

// command runs step s's command on pl as otarun would: version is the
// version an install offers. A boot is the bootloader and then the
// engine's recovery.
func (r *runner) command(pl devicePort, s step, version string) (hal.RebootResult, error) {
	switch s.kind {
	case stepInstall:
		path, err := r.f.image(s.img, version)
		if err != nil {
			panic(err) // the fixture's own failure, not the device's
		}
		err = r.engine(pl, s.img == imgAllowed).Install(r.ctx, engine.Source{URL: path})
		return hal.RebootResult{}, err
	case stepResume:
		return hal.RebootResult{}, r.engine(pl, false).Resume(r.ctx)
	case stepBoot:
		res, err := pl.Reboot(r.ctx)
		if err == nil {
			_, err = r.engine(pl, false).Recover(r.ctx)
		}
		return res, err
	case stepConfirm:
		return hal.RebootResult{}, r.engine(pl, false).Confirm(r.ctx)
	case stepRollback:
		return hal.RebootResult{}, r.engine(pl, false).Rollback(r.ctx)
	case stepKeySet:
		raw, err := r.f.keySet(s.keySet)
		if err != nil {
			panic(err) // the fixture's own failure, not the device's
		}
		// Taken, or refused while a trial or a boot request is pending:
		// either way the model expects the same device.
		_, err = r.engine(pl, false).ApplyKeySet(r.ctx, raw)
		return hal.RebootResult{}, err
	}
	return hal.RebootResult{}, nil
}

// arm arms step s's power cut at a flash operation the command makes:
// it first runs the command on a clone of the flash to count them, then
// picks the one the step drew. A command that makes none gets a power
// cycle after it, with no cut.
func (r *runner) arm(i int, s step, version string) {
	probe := r.dev.Clone()
	pl, err := r.f.platform(probe)
	if err != nil {
		return
	}
	if s.kind == stepAgentOrder || s.kind == stepAgentRestart {
		r.runAgent(&agentPort{devicePort: pl}, i, s, version)
	} else {
		_, _ = r.command(pl, s, version)
	}
	if n := probe.Ops(); n > 0 {
		r.at[i] = 1 + int(s.cut.frac*float64(n))
		r.dev.SetCut(flash.Cut{At: r.at[i], When: s.cut.when, Seed: s.cut.seed})
	}
}

// step runs one command and checks the promises after it.
func (r *runner) step(i int, s step) *model.Violation {
	pl := r.pl
	version := s.version
	if (s.kind == stepInstall || s.kind == stepAgentOrder) && s.img == imgEqual {
		version = r.m.Running()
		r.equal[i] = version
	}
	im := model.Image{Version: version, Trusted: s.img != imgWrongKey, Policy: s.img != imgWrongAlg, Intact: s.img != imgTampered, Fits: s.img != imgOversized, AllowDowngrade: s.img == imgAllowed}
	if s.img == imgDelta {
		im.Base = factoryVersion
	}
	var other string
	if s.kind == stepRollback {
		other = r.otherSlot(pl)
	}
	if s.cut.on {
		r.arm(i, s, version)
	}
	if s.kind == stepAgentOrder || s.kind == stepAgentRestart {
		im.AllowDowngrade = false
		var img *model.Image
		if s.kind == stepAgentOrder {
			img = &im
		}
		// The order the agent held before the step, which it carries
		// out again first: a cut may interrupt its install too.
		var imgs []*model.Image
		if r.agentOrder != nil {
			imgs = append(imgs, r.agentOrder)
		}
		v, installed := r.agentStep(pl, i, s, version, img)
		if v != nil {
			return v
		}
		if img != nil && !installed {
			imgs = append(imgs, img)
		}
		return r.afterCut(i, s, imgs...)
	}
	res, err := r.command(pl, s, version)
	var v *model.Violation
	if !r.dev.PoweredOff() || err == nil {
		if r.dev.PoweredOff() {
			// The command made all its flash operations, and the power
			// went after the last: what it printed is checked against the
			// flash as it left it, not against a device that is off.
			off, done, perr := r.offPort()
			if perr != nil {
				return &model.Violation{Rule: "port", Detail: perr.Error()}
			}
			defer done()
			pl = off
		}
		switch s.kind {
		case stepInstall:
			v = r.m.Install(im, err == nil)
		case stepResume:
			var installed string
			if err == nil {
				st, serr := r.engine(pl, false).Status(r.ctx)
				if serr != nil {
					return &model.Violation{Rule: "status", Detail: serr.Error()}
				}
				installed = st.Image
			}
			v = r.m.Resume(err == nil, installed)
		case stepBoot:
			obs, oerr := r.observeOn(pl)
			if oerr != nil {
				return &model.Violation{Rule: "boots", Detail: oerr.Error()}
			}
			if err == nil && res.Version != obs.Running {
				return &model.Violation{Rule: "boot-claim", Detail: fmt.Sprintf("boot printed %s %s, but %s runs", res.Slot, res.Version, obs.Running)}
			}
			v = r.m.Boot(obs, err)
		case stepConfirm:
			v = r.m.Confirm(err == nil)
		case stepRollback:
			v = r.m.Rollback(err == nil, other)
		}
	}
	if v != nil {
		return v
	}
	if s.kind == stepInstall {
		return r.afterCut(i, s, &im)
	}
	return r.afterCut(i, s)
}

// afterCut ends step i: when it drew a power cut, the power goes (at the
// operation arm chose, or after a command that made none) and comes back,
// with imgs the images the step may have been installing. Then the
// promises that hold after every step are checked.
func (r *runner) afterCut(i int, s step, imgs ...*model.Image) *model.Violation {
	if s.cut.on {
		// The power goes (at the operation arm chose, or after a command
		// that made none) and comes back: the bootloader, then the engine's
		// recovery, as `otarun boot`.
		if r.dev.PoweredOff() {
			r.fired[i] = true
			r.c.cuts[s.cut.when.String()]++
			r.m.Cut(nil)
			for _, img := range imgs {
				r.m.Cut(img)
			}
		} else {
			r.c.armed++
		}
		r.dev.SetCut(flash.Cut{})
		r.dev = r.dev.Clone()
		var err error
		if r.pl, err = r.f.platform(r.dev); err != nil {
			return r.m.Boot(model.Observed{}, err)
		}
		if v := r.powerOn(); v != nil {
			return v
		}
	}
	obs, err := r.observe()
	if err != nil {
		return &model.Violation{Rule: "status", Detail: err.Error()}
	}
	return r.m.Check(obs)
}

// offPort opens a port over the flash as a power cut after a command's last
// flash operation left it, without booting: `otarun status` as if it had
// run before the power went. The device itself answers nothing while its
// power is off; a port that kept the state in memory could answer, one
// that reads the flash (the C port, core/boot's on a direct-xip board)
// cannot, and neither is wrong.
func (r *runner) offPort() (devicePort, func(), error) {
	pl, err := r.f.platform(r.dev.Clone())
	if err != nil {
		return nil, nil, err
	}
	return pl, func() { _ = pl.Close() }, nil
}

// powerOn is `otarun boot` after a power cut.
func (r *runner) powerOn() *model.Violation {
	pl := r.pl
	if _, err := pl.Reboot(r.ctx); err != nil {
		return r.m.Boot(model.Observed{}, err)
	}
	if _, err := r.engine(pl, false).Recover(r.ctx); err != nil {
		return r.m.Boot(model.Observed{}, fmt.Errorf("recover: %w", err))
	}
	obs, err := r.observe()
	if err != nil {
		return r.m.Boot(model.Observed{}, err)
	}
	return r.m.Boot(obs, nil)
}

// otherSlot is the version the bootloader reports in the slot that does
// not run, what a dual-bank rollback returns to.
func (r *runner) otherSlot(pl devicePort) string {
	info, err := pl.Describe(r.ctx)
	if err != nil {
		return ""
	}
	for _, s := range info.Boot.Slots {
		if !s.Active && s.Bootable {
			return s.Version
		}
	}
	return ""
}

// observe is what `otarun status` shows: the port's boot state and the
// engine's.
func (r *runner) observe() (model.Observed, error) { return r.observeOn(r.pl) }

// observeOn is observe through the port pl.
func (r *runner) observeOn(pl devicePort) (model.Observed, error) {
	st, err := r.engine(pl, false).Status(r.ctx)
	if err != nil {
		return model.Observed{}, err
	}
	obs := model.Observed{Running: st.RunningVersion, Trial: st.Trial, EngineState: string(st.State), EngineImage: st.Image}
	for _, s := range st.Slots {
		obs.Slots = append(obs.Slots, model.Slot{Name: s.Name, Version: s.Version, Active: s.Active, Pending: s.Pending, Confirmed: s.Confirmed})
	}
	return obs, nil
}
