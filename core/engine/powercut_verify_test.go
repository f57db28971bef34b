package engine_test

import (
	"context"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
)

// TestPowerCut_ResumeOfAnErasedSlotStartsOver is the power-cut sweep's find
// on the direct-xip board: a cut after SetBoot left the record Verifying,
// the image then booted on trial, a second cut came before Recover saved
// Testing, and the power-on after it found the trial unconfirmed: MCUboot
// erased it. The resume must not verify the erased slot (and fail the
// install): the slot no longer holds what the record says, so the install
// starts over from the order's source.
func TestPowerCut_ResumeOfAnErasedSlotStartsOver(t *testing.T) {
	ctx := context.Background()
	base := cutBase(t, "nrf52840-dk-xip")
	src := writeFile(t, signed(t, base.keys.priv, "1.1.0", 20<<10, 2))

	// Count the install's flash operations on a copy: the last saves
	// Installed, after SetBoot.
	probe := &device{t: t, layout: base.layout, keys: base.keys}
	probe.powerOn(base.dev.Clone())
	before := probe.dev.Ops()
	if err := probe.engine(cutOpts).Install(ctx, engine.Source{URL: src}); err != nil {
		t.Fatal(err)
	}
	ops := probe.dev.Ops() - before

	d := &device{t: t, layout: base.layout, keys: base.keys}
	d.powerOn(base.dev.Clone())
	d.dev.SetCut(flash.Cut{At: ops, When: flash.Before})
	if err := d.engine(cutOpts).Install(ctx, engine.Source{URL: src}); err == nil {
		t.Fatal("install: no error with the power cut")
	}

	// The trial boots; the power goes before Recover saves Testing.
	d.powerOn(d.dev.Clone())
	if res := d.reboot(); res.Version != "1.1.0+0" {
		t.Fatalf("after the install 1.1.0 should boot on trial, %s %s runs", res.Slot, res.Version)
	}
	d.dev.SetCut(flash.Cut{At: 1, When: flash.Before})
	if _, err := d.engine(cutOpts).Recover(ctx); err == nil {
		t.Fatal("recover: no error with the power cut")
	}

	// Unconfirmed: MCUboot gives the trial up and erases it.
	d.powerOn(d.dev.Clone())
	_, st := d.recover()
	if st.RunningVersion != "1.0.0+0" || st.State != engine.Verifying {
		t.Fatalf("after the unconfirmed trial: %s runs, state %s; want 1.0.0 and verifying (the case under test)", st.RunningVersion, st.State)
	}

	if err := d.engine(cutOpts).Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if st := d.status(); st.State != engine.Installed {
		t.Errorf("after the resume: state %s (%s), want installed", st.State, st.LastError)
	}
	d.expectRuns("1.1.0+0")
}
