package model

import "testing"

// dual is a dual-bank board with three boot attempts, as b-l475e-iot01a;
// swap a swap board (MCUboot swap-move), one trial boot, the image always
// in app; single a single-bank board.
var (
	dual   = Config{Reverts: true, BootAttempts: 3}
	swap   = Config{Reverts: true, BootAttempts: 1}
	single = Config{BootAttempts: 1}
)

func good(v string) Image {
	return Image{Version: v, Trusted: true, Policy: true, Intact: true, Fits: true}
}

// bad is image v with one defect, set by spoil.
func bad(v string, spoil func(*Image)) Image {
	img := good(v)
	spoil(&img)
	return img
}

// Defects an image may have, for bad.
var (
	oversized = func(i *Image) { i.Fits = false }
	tampered  = func(i *Image) { i.Intact = false }
	otherAlg  = func(i *Image) { i.Policy = false }
)

// obs builds what a user sees of a two-slot device.
func obs(running string, trial bool, state, image string, slots ...Slot) Observed {
	return Observed{Running: running, Trial: trial, Slots: slots, EngineState: state, EngineImage: image}
}

// TestModel walks the model through user stories: those a correct device
// tells keep every promise, those of issue 9's reproductions break the
// rule named.
func TestModel(t *testing.T) {
	const v0, v1 = "1.0.0+0", "1.1.0+0"
	trialObs := obs(v1, true, "testing", v1, Slot{Name: "app", Version: v0, Confirmed: true}, Slot{Name: "ota", Version: v1, Active: true})
	swapTrial := obs(v1, true, "testing", v1, Slot{Name: "app", Version: v1, Active: true}, Slot{Name: "ota", Version: v0})
	cases := []struct {
		name string
		cfg  Config
		play func(m *Model) *Violation
		want string // rule broken, "" for none
	}{
		{"a delta from the running image is taken", dual, func(m *Model) *Violation {
			d := good(v1)
			d.Base = v0
			return m.Install(d, true)
		}, ""},
		{"a delta from another image must be refused", dual, func(m *Model) *Violation {
			d := good(v1)
			d.Base = "0.9.0+0"
			return m.Install(d, true)
		}, "install-accepted"},
		{"a delta from another image refused changes nothing", dual, func(m *Model) *Violation {
			d := good(v1)
			d.Base = "0.9.0+0"
			return first(m.Install(d, false), m.Boot(obs(v0, false, "confirmed", v0), nil))
		}, ""},
		{"upgrade, trial, confirm", dual, func(m *Model) *Violation {
			return first(
				m.Install(good(v1), true),
				m.Check(obs(v0, false, "installed", v1, Slot{Name: "app", Version: v0, Active: true, Confirmed: true}, Slot{Name: "ota", Version: v1, Pending: true})),
				m.Boot(trialObs, nil),
				m.Confirm(true),
				m.Boot(obs(v1, false, "confirmed", v1), nil),
			)
		}, ""},
		{"trial reverts after boot_attempts boots", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(trialObs, nil), m.Boot(trialObs, nil), m.Boot(trialObs, nil),
				m.Boot(obs(v0, false, "rolled-back", v1), nil))
		}, ""},
		{"swap: install during the trial refused", swap, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(swapTrial, nil), m.Install(good("1.2.0+0"), false))
		}, ""},
		{"swap: install during the trial accepted", swap, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(swapTrial, nil), m.Install(good("1.2.0+0"), true))
		}, "install-accepted"},
		{"swap: rollback after confirm returns to ota's image", swap, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(swapTrial, nil), m.Confirm(true),
				m.Rollback(true, v0), m.Boot(obs(v0, false, "rolled-back", v1), nil))
		}, ""},
		{"swap: a second trial boot", swap, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(swapTrial, nil), m.Boot(swapTrial, nil))
		}, "boot-claim"},
		{"single-bank: rollback after the copy accepted", single, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(obs(v1, true, "testing", v1), nil), m.Rollback(true, ""))
		}, "rollback-accepted"},
		{"a fourth trial boot", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(trialObs, nil), m.Boot(trialObs, nil), m.Boot(trialObs, nil), m.Boot(trialObs, nil))
		}, "boot-claim"},
		{"issue 9 #1: rollback after a revert", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(trialObs, nil), m.Boot(trialObs, nil), m.Boot(trialObs, nil),
				m.Boot(obs(v0, false, "rolled-back", v1), nil), m.Rollback(true, v1))
		}, "rollback-accepted/reverted"},
		{"issue 9 #1: the reverted image runs again", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(trialObs, nil), m.Rollback(true, v0), m.Boot(obs(v1, false, "confirmed", v1), nil))
		}, "runs-rejected/rolled-back"},
		{"issue 9 #3: a refused install, status failed", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Install(bad("1.2.0+0", oversized), false),
				m.Check(obs(v0, false, "failed", "1.2.0+0", Slot{Name: "ota", Version: v1, Pending: true})))
		}, "status-pending"},
		{"a header refusal drops the pending one", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Install(bad("1.2.0+0", otherAlg), false), m.Check(obs(v0, false, "failed", "1.2.0+0")))
		}, "pending-kept"},
		{"a tampered image, written over the pending one", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Install(bad("1.2.0+0", tampered), false), m.Check(obs(v0, false, "failed", "1.2.0+0")),
				m.Boot(obs(v0, false, "failed", "1.2.0+0"), nil))
		}, ""},
		{"a tampered image, pending kept but status failed", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Install(bad("1.2.0+0", tampered), false),
				m.Check(obs(v0, false, "failed", "1.2.0+0", Slot{Name: "ota", Version: v1, Pending: true})))
		}, "status-pending"},
		{"a second rollback before the reboot", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Boot(trialObs, nil), m.Rollback(true, v0), m.Rollback(false, v0),
				m.Boot(obs(v0, false, "rolled-back", v1), nil))
		}, ""},
		{"equal version accepted", dual, func(m *Model) *Violation { return m.Install(good(v0), true) }, "install-accepted"},
		{"wrong algorithm accepted", dual, func(m *Model) *Violation {
			return m.Install(bad(v1, otherAlg), true)
		}, "install-accepted"},
		{"single-bank rollback with nothing pending", Config{BootAttempts: 1}, func(m *Model) *Violation {
			return m.Rollback(true, "")
		}, "rollback-accepted"},
		{"confirmed without having run", dual, func(m *Model) *Violation {
			return first(m.Install(good(v1), true), m.Check(obs(v0, false, "installed", v1, Slot{Name: "ota", Version: v1, Pending: true, Confirmed: true})))
		}, "confirmed-ran"},
		{"a power cut lets either outcome boot", dual, func(m *Model) *Violation {
			m.Cut(&Image{Version: v1, Trusted: true, Policy: true, Intact: true, Fits: true})
			return m.Boot(trialObs, nil)
		}, ""},
		{"a power cut never lets a bad image run", dual, func(m *Model) *Violation {
			m.Cut(&Image{Version: v1, Trusted: true, Policy: true, Fits: true})
			return m.Boot(trialObs, nil)
		}, "runs-installed"},
		{"the device does not boot", dual, func(m *Model) *Violation { return m.Boot(Observed{}, nil) }, "boots"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := New(c.cfg)
			m.Provisioned(v0)
			got := ""
			if v := c.play(m); v != nil {
				got = v.Rule
			}
			if got != c.want {
				t.Errorf("broken rule %q, want %q", got, c.want)
			}
		})
	}
}

// first is the first violation among vs: the model is driven step by step
// and stops at the first broken promise, as the tester does.
func first(vs ...*Violation) *Violation {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0.0+0", "1.0.0", 0},
		{"1.0.1+0", "1.0.0+0", 1},
		{"0.1.1+0", "1.0.0+0", -1},
		{"1.0.0+1", "1.0.0+0", 1},
		{"x", "0.0.0", -1},
	} {
		if got := Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
