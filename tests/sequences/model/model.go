// Package model is the reference model of an otaport device that the
// sequence tester (tests/sequences) checks the real parts against: what a
// user may expect of a device after any sequence of provision, install,
// resume, boot, confirm, rollback and power cuts.
//
// It is written from the user's side, not from the code's: it imports
// nothing of otaport (neither the engine nor the bootloader it judges), and
// it knows only what a user can see (what a command answered, what a boot
// and a status print) and the promises of docs/engine.md and issue 9:
//
//   - the device boots;
//   - what runs was installed and verified, and was never rejected,
//     reverted or rolled back since it was last installed;
//   - a confirmed image ran (on trial, or after a single-bank copy) or was
//     provisioned;
//   - a trial image boots at most boot_attempts times without a confirm;
//   - a command's answer is what then happens: an accepted install boots
//     at the next power-on, a refused one changes nothing (a pending image
//     stays pending, and status keeps saying so), a rollback runs the
//     previous image at the next power-on and is refused when there is
//     nothing to return to, a confirm of a trial keeps it;
//   - status agrees with the bootloader: a pending slot is an installed
//     image, a trial is a testing one.
//
// It is not a simulator: it does not predict flash contents or boot
// parameters, only what the user may rely on. Where a power cut leaves
// several outcomes allowed, it accepts each of them until the next boot
// shows which one happened.
package model

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Config is what the model knows of a board: whether its scheme keeps the
// previous image after an upgrade (dual-bank, and swap, whose image always
// runs from app while the previous one waits in ota), and how many
// unconfirmed boots a trial image gets.
type Config struct {
	Reverts      bool
	BootAttempts int
	// HigherOnly: the bootloader boots the slot with the higher version
	// (MCUboot direct-xip), so an image not above what runs is refused,
	// downgrades allowed or not: it would never boot.
	HigherOnly bool
}

// Image describes an image offered to install, as its maker knows it.
type Image struct {
	Version string
	// Trusted: signed with a key the device trusts.
	Trusted bool
	// Policy: signed with the algorithm the board's image.signature
	// names (issue 9, item 4: another one is refused, even when trusted).
	Policy bool
	// Intact: its bytes are those that were signed.
	Intact bool
	// Fits: it fits the board's update slot.
	Fits bool
	// AllowDowngrade: installed with --allow-downgrade.
	AllowDowngrade bool
	// Base is, for a delta image, the version of the image it is made
	// from: the device takes it only while that image runs (and refuses
	// it before writing anything otherwise). "" for a full image.
	Base string
}

// Slot is one slot as the bootloader reports it.
type Slot struct {
	Name      string
	Version   string // "" when it holds no image that verifies
	Active    bool
	Pending   bool
	Confirmed bool
}

// Observed is what a user sees of the device after a step: the
// bootloader's view (otarun status's table) and the engine's state.
type Observed struct {
	Running     string // version that runs, "" when none
	Trial       bool
	Slots       []Slot
	EngineState string // idle, downloading, ..., failed (docs/engine.md)
	EngineImage string // the version the engine's state is about
}

// Violation is a broken promise. Rule is short and stable, so that a
// shrunk sequence can be checked to fail for the same reason.
type Violation struct {
	Rule   string
	Detail string
}

func (v *Violation) Error() string { return v.Rule + ": " + v.Detail }

func violate(rule, format string, a ...any) *Violation {
	return &Violation{Rule: rule, Detail: fmt.Sprintf(format, a...)}
}

// Model is the expected state of one device.
type Model struct {
	cfg Config

	running string // what the last boot ran

	// installed: versions installed and verified (or provisioned), the
	// only ones that may ever run. forbidden: versions rejected, reverted
	// or rolled back since they were last installed, with why.
	installed map[string]bool
	forbidden map[string]string
	// ran: versions that ran after their install (on trial, after a
	// single-bank copy) or were provisioned: the only ones that may be
	// confirmed.
	ran map[string]bool

	// pending is what an accepted install asked the bootloader to boot;
	// pendingKnown is false after a power cut until the next boot.
	pending      string
	pendingKnown bool

	// trial is the image on trial, trialBoots its boots seen so far and
	// trialFrom what ran before it (what a revert returns to).
	// trialExact is false when a power cut may have hidden a boot.
	trial      string
	trialBoots int
	trialFrom  string
	trialExact bool

	// next lists what the next boot may run (nil: anything the other
	// rules allow, after a power cut).
	next []string

	// rollbackAsked: a rollback was accepted and the boot that carries
	// it out has not come yet.
	rollbackAsked bool
	// returnTo is what an accepted rollback returns to at the next boot
	// when that is not what runs (a trial given up, a confirmed upgrade
	// rolled back): on dual-bank and swap it sits in the update slot,
	// which no install may erase before that boot.
	returnTo string

	// interrupted lists the installs a power cut may have left for a
	// resume to finish: the last one cut, and the ones before it when
	// the cut may have come before the new install recorded itself.
	interrupted []Image
}

// New returns the model of a device that has never run anything.
func New(c Config) *Model {
	return &Model{cfg: c, installed: map[string]bool{}, forbidden: map[string]string{}, ran: map[string]bool{}, pendingKnown: true}
}

// Provisioned: the factory wrote, booted and confirmed image v.
func (m *Model) Provisioned(v string) {
	m.installed[v], m.ran[v] = true, true
	delete(m.forbidden, v)
	m.running, m.next = v, []string{v}
}

// Acceptable says whether the device must take img now: signed with a
// trusted key, intact, fitting, newer than what runs (unless downgrades
// are allowed), and, on a board that keeps the previous image, not while a
// trial or a rollback holds the fallback image in the update slot.
func (m *Model) Acceptable(img Image) bool {
	if !img.Trusted || !img.Policy || !img.Intact || !img.Fits {
		return false
	}
	if img.Base != "" && img.Base != m.running {
		return false
	}
	if m.cfg.Reverts && (m.trial != "" || m.returnTo != "") {
		return false
	}
	if m.cfg.HigherOnly && m.running != "" && Compare(img.Version, m.running) <= 0 {
		return false
	}
	return img.AllowDowngrade || Compare(img.Version, m.running) > 0
}

// Install: an install of img answered ok (accepted: "installed, reboot to
// apply") or refused.
func (m *Model) Install(img Image, ok bool) *Violation {
	want := m.Acceptable(img)
	if ok != want {
		if ok {
			return violate("install-accepted", "an install of %s was accepted; the device must refuse it (%s)", img.Version, m.why(img))
		}
		return violate("install-refused", "an install of %s was refused; the device must take it", img.Version)
	}
	switch {
	case ok:
		m.interrupted = nil
		m.accept(img.Version)
	case !img.Trusted || !img.Intact:
		// Refused late: the hash and the signature are at the end of
		// the image, so its bytes went to the update slot first. That
		// slot held the pending image and the interrupted download, if
		// any: both may be gone (and status must then say so), or a
		// device that checks first may have kept them.
		m.interrupted = nil
		if m.pending != "" {
			m.pendingKnown = false
			m.next = []string{m.pending, m.running}
		}
	}
	// Refused from its header (size, version, algorithm): nothing was
	// written and nothing changes, a pending image and an interrupted
	// download included.
	return nil
}

// why explains a refusal the model expects.
func (m *Model) why(img Image) string {
	switch {
	case !img.Trusted:
		return "not signed with a trusted key"
	case !img.Policy:
		return "signed with another algorithm than the board's"
	case !img.Intact:
		return "its bytes are not those signed"
	case !img.Fits:
		return "too large for the slot"
	case img.Base != "" && img.Base != m.running:
		return "a delta made from " + img.Base + ", and " + m.running + " runs"
	case m.cfg.Reverts && m.trial != "":
		return "image " + m.trial + " is on trial"
	case m.cfg.Reverts && m.returnTo != "":
		return "a rollback to " + m.returnTo + " awaits the next boot"
	}
	return "not newer than the running " + m.running
}

// accept records an install the device took: v is pending and boots next.
func (m *Model) accept(v string) {
	m.installed[v] = true
	delete(m.forbidden, v)
	m.pending, m.pendingKnown = v, true
	m.next = []string{v}
}

// Resume: a resume answered ok (and then says which version it installed)
// or refused. Only an interrupted install of an acceptable image may
// complete.
func (m *Model) Resume(ok bool, version string) *Violation {
	cands := m.interrupted
	m.interrupted = nil
	if !ok {
		return nil
	}
	i := slices.IndexFunc(cands, func(c Image) bool { return c.Version == version })
	if i < 0 {
		return violate("resume-accepted", "a resume completed an install of %s, but no install of it was interrupted", version)
	}
	if img := cands[i]; !img.Trusted || !img.Policy || !img.Intact || !img.Fits {
		return violate("install-accepted", "a resume completed the install of %s; the device must refuse it (%s)", img.Version, m.why(img))
	}
	m.accept(version)
	return nil
}

// Confirm: a confirm answered ok or refused.
func (m *Model) Confirm(ok bool) *Violation {
	if m.trial != "" {
		if !ok {
			return violate("confirm-refused", "confirm of %s on trial was refused: the trial hint says confirm keeps it", m.trial)
		}
		m.trial = ""
		if m.pendingKnown && m.pending == "" {
			m.next = []string{m.running}
		}
	}
	return nil
}

// Rollback: a rollback answered ok or refused. other is the version the
// bootloader reports in the slot that does not run ("" when none).
func (m *Model) Rollback(ok bool, other string) *Violation {
	var target, away string
	allowed := true
	switch {
	case !m.pendingKnown:
		allowed = ok // after a power cut the model does not know
	case len(m.interrupted) > 0:
		// An interrupted download is dropped; what runs and what is
		// pending stay.
		if !ok {
			return violate("rollback-refused", "rollback was refused while the interrupted install of %s could be dropped", m.interrupted[len(m.interrupted)-1].Version)
		}
		m.interrupted = nil
		return nil
	case m.pending != "":
		target, away = m.running, m.pending
	case m.rollbackAsked:
		// Asked again before the reboot: refusing ("already asked
		// for") and accepting without changing anything both keep the
		// promise of the first one.
		return nil
	case !m.cfg.Reverts:
		allowed = false
	case m.trial != "":
		target, away = m.trialFrom, m.trial
	case other != "" && other != m.running && m.ran[other] && m.forbidden[other] == "":
		target, away = other, m.running
	default:
		allowed = false
	}
	if ok && !allowed {
		// The rule names why nothing was there, so that a rollback to a
		// reverted image and one to a cancelled image are told apart.
		rule := "rollback-accepted"
		if why := m.forbidden[other]; why != "" {
			rule += "/" + strings.ReplaceAll(why, " ", "-")
		}
		return violate(rule, "rollback succeeded while %s runs with nothing to return to (other slot: %q%s)", m.running, other, m.forbiddenNote(other))
	}
	if !ok && allowed && m.pendingKnown {
		return violate("rollback-refused", "rollback was refused while %s could return to %s", away, target)
	}
	if !ok {
		return nil
	}
	if away != "" {
		m.forbidden[away] = "rolled back"
		if m.pending == away {
			m.forbidden[away] = "cancelled"
		}
	}
	m.pending, m.trial, m.interrupted = "", "", nil
	m.rollbackAsked = true
	m.returnTo = ""
	if target != "" && target != m.running {
		m.returnTo = target
	}
	if target != "" {
		m.next = []string{target}
	} else {
		m.next = nil
	}
	return nil
}

func (m *Model) forbiddenNote(v string) string {
	if why := m.forbidden[v]; why != "" {
		return ", " + why
	}
	return ""
}

// Cut: a power cut stopped a command. What it may have done is allowed
// until the next boot shows what happened. img is the image an install or
// resume was writing (nil otherwise).
func (m *Model) Cut(img *Image) {
	if img != nil {
		m.interrupted = append(m.interrupted, *img)
	}
	for _, c := range m.interrupted {
		// The install (or the resume of it) may have reached the
		// bootloader's request.
		if c.Trusted && c.Policy && c.Intact && c.Fits {
			m.installed[c.Version] = true
			delete(m.forbidden, c.Version)
		}
	}
	m.pendingKnown, m.next = false, nil
	if m.trial != "" {
		m.trialExact = false
	}
}

// Boot: a power-on; err is what the bootloader answered, obs what then
// runs.
func (m *Model) Boot(obs Observed, err error) *Violation {
	if err != nil {
		return violate("boots", "the device does not boot: %v", err)
	}
	v := obs.Running
	if v == "" {
		return violate("boots", "no image runs after the boot")
	}
	if !m.installed[v] {
		return violate("runs-installed", "%s runs but was never installed and verified", v)
	}
	if why := m.forbidden[v]; why != "" {
		return violate("runs-rejected/"+strings.ReplaceAll(why, " ", "-"), "%s runs but was %s since it was last installed", v, why)
	}
	if m.next != nil && !slices.Contains(m.next, v) {
		return violate("boot-claim", "the boot ran %s; the commands before promised %s", v, strings.Join(m.next, " or "))
	}
	prev := m.running
	m.running = v
	// It ran: after its install (a trial, a single-bank copy) or as a
	// fallback; either way the user saw it run before confirming it.
	m.ran[v] = true
	if obs.Trial {
		if m.trial == v {
			m.trialBoots++
		} else {
			m.trial, m.trialBoots, m.trialFrom, m.trialExact = v, 1, prev, m.pendingKnown
		}
		m.ran[v] = true
		if m.trialBoots > m.cfg.BootAttempts {
			return violate("trial-bounded", "%s booted on trial %d times; boot_attempts is %d", v, m.trialBoots, m.cfg.BootAttempts)
		}
	} else if m.trial != "" {
		if v != m.trial {
			m.forbidden[m.trial] = "reverted"
		}
		m.trial = ""
	}
	m.pending, m.pendingKnown, m.rollbackAsked, m.returnTo = "", true, false, ""
	if obs.EngineState != "downloading" && obs.EngineState != "verifying" {
		m.interrupted = nil // the cut came after the install's end
	}
	switch {
	case m.trial == "":
		m.next = []string{v}
	case !m.trialExact:
		m.next = []string{v, m.trialFrom}
	case m.trialBoots < m.cfg.BootAttempts:
		m.next = []string{v}
	default:
		m.next = []string{m.trialFrom}
	}
	return nil
}

// Check holds after every step: what runs is what the last boot ran,
// status agrees with the bootloader, a pending request is the one an
// accepted install made, and only images that ran are confirmed.
func (m *Model) Check(obs Observed) *Violation {
	if obs.Running != m.running {
		return violate("runs-unchanged", "%s runs, but the last boot ran %s and there was no boot since", obs.Running, m.running)
	}
	var pending []string
	for _, s := range obs.Slots {
		if s.Pending {
			pending = append(pending, s.Version)
			if obs.EngineState != "installed" || obs.EngineImage != s.Version {
				return violate("status-pending", "slot %s holds %s pending, but status says %s %s", s.Name, s.Version, obs.EngineState, obs.EngineImage)
			}
		}
		if s.Confirmed && s.Version != "" && !m.ran[s.Version] {
			return violate("confirmed-ran", "slot %s holds %s confirmed, but it never ran on trial and was not provisioned", s.Name, s.Version)
		}
	}
	if obs.Trial && (obs.EngineState != "testing" || obs.EngineImage != obs.Running) {
		return violate("status-trial", "%s runs on trial, but status says %s %s", obs.Running, obs.EngineState, obs.EngineImage)
	}
	if m.pendingKnown {
		want := []string{}
		if m.pending != "" {
			want = []string{m.pending}
		}
		if !slices.Equal(pending, want) && !(len(pending) == 0 && len(want) == 0) {
			return violate("pending-kept", "the bootloader has %v pending; the commands so far leave %v", pending, want)
		}
	}
	return nil
}

// Running returns the version the model believes runs.
func (m *Model) Running() string { return m.running }

// Compare orders versions major.minor.revision+build (MCUboot's), as
// -1, 0 or 1; a version that does not parse is lower than any other.
func Compare(a, b string) int {
	pa, oka := parse(a)
	pb, okb := parse(b)
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return -1
	case !okb:
		return 1
	}
	return slices.Compare(pa, pb)
}

func parse(s string) ([]int, bool) {
	s, build, _ := strings.Cut(s, "+")
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, false
	}
	if build == "" {
		build = "0"
	}
	var out []int
	for _, p := range append(parts, build) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}
