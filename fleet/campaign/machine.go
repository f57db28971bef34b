// Package campaign rolls an image out to a set of devices in waves, with
// hawkBit's rollout rules: waves start in cascade, a wave succeeds when
// finished/total >= the success threshold and then the next wave starts, and
// the campaign pauses when failed/total > the error threshold in a wave
// (strictly greater). An empty wave counts as a success. An operator's
// resume acknowledges the failures counted so far, as hawkBit's does: from
// then on the wave's thresholds count its devices without them, so a wave
// whose failures were accepted can still succeed, and a new failure is
// weighed against the devices still to come.
//
// The rules are a pure state machine (Machine: feed events, read the state
// and the orders to send), kept apart from the plumbing that feeds it from
// the devices' MQTT topics and publishes the orders (Service). It is not the
// device registry (fleet/store) nor the firmware host (fleet/firmware).
package campaign

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/store"
)

// ErrState is returned for an operator action the campaign's state does not
// allow (pausing a finished campaign, resuming a running one).
var ErrState = errors.New("not allowed in this state")

// Event is one input to a Machine. Device, Step, Desc and Version are used by
// the device events; At stamps the records the event changes.
type Event struct {
	// Kind is a device report (event.Progress, event.Inform) or an
	// operator action (event.Pause, event.Resume, event.Cancel).
	Kind    event.Kind
	Device  string // store.DeviceKey
	Step    int
	Desc    string
	Version string
	// Hash is the running image hash an inform reports
	// (cloud.InformParams.ImageHash), "" when it reports none.
	Hash string
	At   time.Time
}

// Machine is one campaign's state: the campaign record and its devices'
// progress. It does no I/O: the caller persists Changed() and sends the
// orders the methods return.
//
// A caller that must keep the machine as stored until a write commits
// applies events to a Draft and Commits it once the write has succeeded.
type Machine struct {
	c store.Campaign
	// devs is every device's progress, or in a draft only the records the
	// draft changed; the others are read from base.
	devs    map[string]*store.Progress
	base    *Machine
	changed map[string]bool
	// tallies counts each wave's devices by outcome, so that an event
	// costs what it changes, not the size of its wave (a wave of 100,000
	// devices counted at every report made a campaign quadratic); nil
	// until the first count. touched holds, for each device edited since
	// the tallies were last brought up to date, the state it was counted
	// in then.
	tallies []tally
	touched map[string]store.ProgressState
	// deltas holds, by the ID of the full image they rebuild, the delta
	// images an order may carry instead (SetDeltas); a draft shares its
	// base's.
	deltas map[uint64][]store.Image
}

// NewMachine returns the machine over a stored campaign and its progress.
// It compares versions as the device agent does (image.SameVersion).
func NewMachine(c store.Campaign, ps []store.Progress) *Machine {
	m := &Machine{c: c, devs: make(map[string]*store.Progress, len(ps)), changed: map[string]bool{}, touched: map[string]store.ProgressState{}}
	for i := range ps {
		p := ps[i]
		m.devs[p.Device] = &p
	}
	return m
}

// Draft returns a copy of m to apply events to, for a caller that must not
// change m before the events are stored: m stays as it is until Commit. The
// draft shares m's unchanged progress records, read-only, and copies a
// record on its first change, so it costs what it changes, not the size of
// the campaign.
func (m *Machine) Draft() *Machine {
	c := m.c
	// Wave device lists are never written, so they are shared; the waves'
	// states are.
	c.Waves = slices.Clone(m.c.Waves)
	return &Machine{c: c, devs: map[string]*store.Progress{}, base: m, changed: map[string]bool{}, deltas: m.deltas, touched: map[string]store.ProgressState{}}
}

// SetDeltas gives the machine the delta images its orders may carry, by the
// ID of the full image each rebuilds; from then on a device is ordered the
// delta made from the image it reports running (ChooseDelta). The map is
// the machine's from then on: the caller makes a new one to change it.
func (m *Machine) SetDeltas(deltas map[uint64][]store.Image) { m.deltas = deltas }

// Commit makes a draft of m, and what was applied to it, m's own. m must
// not have changed since the draft was made.
func (m *Machine) Commit(d *Machine) {
	m.c = d.c
	for k, p := range d.devs {
		m.touch(k, m.devs[k].State)
		m.devs[k] = p
	}
}

// touch notes that a device counted in state was, or is about to be,
// changed: the tallies take it into account at the next count.
func (m *Machine) touch(key string, state store.ProgressState) {
	if _, ok := m.touched[key]; !ok {
		m.touched[key] = state
	}
}

// get returns a device's record to read.
func (m *Machine) get(key string) (*store.Progress, bool) {
	if p, ok := m.devs[key]; ok {
		return p, true
	}
	if m.base != nil {
		return m.base.get(key)
	}
	return nil, false
}

// edit returns a device's record to change, marked changed; in a draft, the
// draft's own copy. The device must be in the campaign.
func (m *Machine) edit(key string) *store.Progress {
	m.changed[key] = true
	if p, ok := m.devs[key]; ok {
		m.touch(key, p.State)
		return p
	}
	cp := *m.base.mustGet(key)
	m.touch(key, cp.State)
	m.devs[key] = &cp
	return &cp
}

func (m *Machine) mustGet(key string) *store.Progress {
	p, ok := m.get(key)
	if !ok {
		panic("campaign: device " + key + " is not in campaign " + fmt.Sprint(m.c.ID)) // a programmer's error
	}
	return p
}

// keys returns every device of the campaign, unordered.
func (m *Machine) keys() []string {
	root := m
	for root.base != nil {
		root = root.base
	}
	out := make([]string, 0, len(root.devs))
	for k := range root.devs {
		out = append(out, k)
	}
	return out
}

// Campaign returns a copy of the campaign record as it is now; the copy
// shares nothing with the machine, so it may be read while events go on.
func (m *Machine) Campaign() store.Campaign {
	c := m.c
	c.Waves = make([]store.Wave, len(m.c.Waves))
	for i, w := range m.c.Waves {
		w.Devices = slices.Clone(w.Devices)
		c.Waves[i] = w
	}
	c.Target.Devices = slices.Clone(c.Target.Devices)
	return c
}

// Device returns one device's progress.
func (m *Machine) Device(key string) (store.Progress, bool) {
	p, ok := m.get(key)
	if !ok {
		return store.Progress{}, false
	}
	return *p, true
}

// Devices returns every device's progress ordered by key.
func (m *Machine) Devices() []store.Progress {
	keys := m.keys()
	out := make([]store.Progress, 0, len(keys))
	for _, k := range keys {
		out = append(out, *m.mustGet(k))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out
}

// Changed returns the progress records changed since the last call, for the
// caller to persist with the campaign.
func (m *Machine) Changed() []store.Progress {
	out := make([]store.Progress, 0, len(m.changed))
	for k := range m.changed {
		out = append(out, *m.devs[k])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	clear(m.changed)
	return out
}

// Active reports whether the campaign still expects device events.
func (m *Machine) Active() bool {
	return m.c.State == store.CampaignRunning || m.c.State == store.CampaignPaused
}

// Start starts the first wave (and any that follow at once because they are
// empty or already succeeded). It returns the devices to order.
func (m *Machine) Start(at time.Time) []string {
	if m.c.State != store.CampaignRunning {
		return nil
	}
	return m.advance(at)
}

// Apply feeds one event and returns the devices to send an order to.
func (m *Machine) Apply(ev Event) ([]string, error) {
	switch ev.Kind {
	case event.Progress:
		return m.progress(ev), nil
	case event.Inform:
		return m.inform(ev), nil
	case event.Pause:
		if m.c.State != store.CampaignRunning {
			return nil, fmt.Errorf("pause campaign %d (%s): %w", m.c.ID, m.c.State, ErrState)
		}
		m.setState(store.CampaignPaused, "paused by operator", ev.At)
		return nil, nil
	case event.Resume:
		if m.c.State != store.CampaignPaused {
			return nil, fmt.Errorf("resume campaign %d (%s): %w", m.c.ID, m.c.State, ErrState)
		}
		// The operator has seen the failures that paused it (or were
		// there when it was paused): the thresholds count anew.
		for i := range m.c.Waves {
			if w := &m.c.Waves[i]; w.State == store.WavePaused {
				_, failed, _ := m.count(i)
				w.Acknowledged = failed
			}
		}
		m.setState(store.CampaignRunning, "", ev.At)
		return m.advance(ev.At), nil
	case event.Cancel:
		if !m.Active() {
			return nil, fmt.Errorf("cancel campaign %d (%s): %w", m.c.ID, m.c.State, ErrState)
		}
		m.setState(store.CampaignCanceled, "canceled by operator", ev.At)
		for _, k := range m.keys() {
			if p := m.mustGet(k); p.State == store.ProgressPending {
				p = m.edit(k)
				p.State, p.Reason, p.Updated = store.ProgressCanceled, "campaign canceled", ev.At
			}
		}
		return nil, nil
	}
	return nil, fmt.Errorf("campaign %d: unknown event kind %q", m.c.ID, ev.Kind)
}

// setState moves the campaign to state s, and its waves with it: the
// running wave of a paused campaign is paused, the unfinished waves of a
// canceled one are canceled.
func (m *Machine) setState(s store.CampaignState, reason string, at time.Time) {
	m.c.State, m.c.Reason, m.c.Updated = s, reason, at
	for i := range m.c.Waves {
		w := &m.c.Waves[i]
		switch {
		case s == store.CampaignPaused && w.State == store.WaveRunning:
			w.State = store.WavePaused
		case s == store.CampaignRunning && w.State == store.WavePaused:
			w.State = store.WaveRunning
		case s == store.CampaignCanceled && w.State != store.WaveSucceeded:
			w.State = store.WaveCanceled
		}
	}
}

// stepReasons names the platform's negative progress steps.
var stepReasons = map[int]string{
	-1: "upgrade failed",
	-2: "download failed",
	-3: "verification failed",
	-4: "flash write failed",
}

func (m *Machine) progress(ev Event) []string {
	p, ok := m.get(ev.Device)
	// A step from a device this campaign has not ordered (or whose part
	// is over) belongs to something else: ignore it.
	if !ok || (p.State != store.ProgressOrdered && p.State != store.ProgressRunning) {
		return nil
	}
	p = m.edit(ev.Device)
	p.Step, p.Desc, p.Updated, p.Progressed = ev.Step, ev.Desc, ev.At, true
	if ev.Step >= 0 {
		p.State = store.ProgressRunning
		return nil
	}
	reason, known := stepReasons[ev.Step]
	if !known {
		reason = fmt.Sprintf("failed with step %d", ev.Step)
	}
	if ev.Desc != "" {
		reason += ": " + ev.Desc
	}
	if p.Delta != 0 && m.c.State == store.CampaignRunning {
		// A delta the device refused (it runs another base than it
		// reported) or could not apply costs one order, not the
		// device: the next order carries the full image.
		p.FailedDelta, p.Reason = p.Delta, fmt.Sprintf("delta image %d: %s; ordered the full image", p.Delta, reason)
		p.State, p.Progressed = store.ProgressOrdered, false
		m.order(p, ev.At)
		return []string{ev.Device}
	}
	m.fail(p, reason, ev.At)
	return m.advance(ev.At)
}

// order makes p's next order, at: it counts it and chooses what it carries,
// the delta image made from the image the device runs when there is one
// (ChooseDelta), else the full image. p is the machine's own record.
func (m *Machine) order(p *store.Progress, at time.Time) {
	p.Orders++
	p.OrderedAt, p.Updated = at, at
	p.Delta = 0
	if img, ok := m.c.Image(*p); ok {
		if d, ok := ChooseDelta(m.deltas[img.ID], *p); ok {
			p.Delta = d.ID
		}
	}
}

// delta returns the delta image id among those of target.
func (m *Machine) delta(target, id uint64) (store.Image, bool) {
	for _, d := range m.deltas[target] {
		if d.ID == id {
			return d, true
		}
	}
	return store.Image{}, false
}

// ChooseDelta picks the delta image a device's order carries among the
// deltas of its campaign image: one whose base is the image the device
// last reported running (p.FromHash), the smallest if there are several.
// A device that reported no hash, runs another image, or has failed a
// delta in this campaign (p.FailedDelta) gets none: the full image.
func ChooseDelta(deltas []store.Image, p store.Progress) (store.Image, bool) {
	var best store.Image
	if p.FromHash == "" || p.FailedDelta != 0 {
		return best, false
	}
	for _, d := range deltas {
		if d.IsDelta() && d.DeltaBaseHash == p.FromHash && (best.ID == 0 || d.Size < best.Size) {
			best = d
		}
	}
	return best, best.ID != 0
}

func (m *Machine) inform(ev Event) []string {
	p, ok := m.get(ev.Device)
	if !ok {
		return nil
	}
	switch p.State {
	case store.ProgressPending:
		// Not ordered yet: remember what it runs, to recognise a rollback
		// and to choose the delta its order carries.
		if p.FromVersion != ev.Version || p.FromHash != ev.Hash {
			p = m.edit(ev.Device)
			p.FromVersion, p.FromHash = ev.Version, ev.Hash
		}
		return nil
	case store.ProgressOrdered, store.ProgressRunning:
	default:
		return nil
	}
	p = m.edit(ev.Device)
	p.Updated = ev.At
	// The version the device was ordered: its board's image's.
	img, _ := m.c.Image(*p)
	if image.SameVersion(ev.Version, img.Version) {
		p.State, p.Reason = store.ProgressFinished, "confirmed running "+ev.Version
		return m.advance(ev.At)
	}
	if !p.Progressed {
		// The device (re)connected before it started on the order: it
		// was offline when it was sent, or lost it. Order again rather
		// than calling a reconnect a rollback.
		p.FromVersion, p.FromHash = ev.Version, ev.Hash
		if m.c.State != store.CampaignRunning {
			return nil
		}
		m.order(p, ev.At)
		return []string{ev.Device}
	}
	if p.FromVersion != "" && image.SameVersion(ev.Version, p.FromVersion) {
		m.fail(p, "rolled back to "+ev.Version, ev.At)
	} else {
		m.fail(p, fmt.Sprintf("runs %s after the order for %s", ev.Version, img.Version), ev.At)
	}
	return m.advance(ev.At)
}

// fail marks a device failed (p is the machine's own record, from edit) and
// pauses the campaign if its wave is now over the error threshold, counted
// without the failures acknowledged by the last resume.
func (m *Machine) fail(p *store.Progress, reason string, at time.Time) {
	p.State, p.Reason, p.Updated = store.ProgressFailed, reason, at
	if m.c.State != store.CampaignRunning {
		return
	}
	w := m.c.Waves[p.Wave]
	_, failed, _ := m.count(p.Wave)
	failed -= w.Acknowledged
	total := len(w.Devices) - w.Acknowledged
	if failed*100 > m.c.ErrorPercent*total {
		since := ""
		if w.Acknowledged > 0 {
			since = " since the last resume"
		}
		m.setState(store.CampaignPaused, fmt.Sprintf("wave %d: %d of %d devices failed%s, over the error threshold of %d%%",
			p.Wave+1, failed, total, since, m.c.ErrorPercent), at)
	}
}

// tally is a wave's devices by outcome.
type tally struct{ finished, failed, open int }

func (t *tally) add(s store.ProgressState, n int) {
	switch s {
	case store.ProgressFinished:
		t.finished += n
	case store.ProgressFailed, store.ProgressCanceled:
		t.failed += n
	default:
		t.open += n
	}
}

// count returns a wave's finished, failed and not-yet-terminal devices.
func (m *Machine) count(wave int) (finished, failed, open int) {
	t := m.tally()[wave]
	return t.finished, t.failed, t.open
}

// tally brings the waves' tallies up to date and returns them: counted
// whole the first time (a draft starts from its base's), then moved by the
// devices edited since.
func (m *Machine) tally() []tally {
	if m.tallies == nil {
		if m.base != nil {
			m.tallies = slices.Clone(m.base.tally())
		} else {
			m.tallies = make([]tally, len(m.c.Waves))
			for i, w := range m.c.Waves {
				for _, k := range w.Devices {
					m.tallies[i].add(m.mustGet(k).State, 1)
				}
			}
			clear(m.touched) // counted as they are now
		}
	}
	for k, before := range m.touched {
		p := m.mustGet(k)
		m.tallies[p.Wave].add(before, -1)
		m.tallies[p.Wave].add(p.State, 1)
	}
	clear(m.touched)
	return m.tallies
}

// advance starts waves while the current one has succeeded, and finishes the
// campaign when every wave has started and every device's part is over. It
// returns the devices newly ordered.
func (m *Machine) advance(at time.Time) []string {
	if m.c.State != store.CampaignRunning {
		return nil
	}
	var orders []string
	for i := range m.c.Waves {
		w := &m.c.Waves[i]
		if w.State == store.WaveSucceeded {
			continue
		}
		if w.State == store.WaveWaiting {
			w.State = store.WaveRunning
			m.c.Updated = at
			for _, k := range w.Devices {
				if m.mustGet(k).State != store.ProgressPending {
					continue
				}
				p := m.edit(k)
				p.State = store.ProgressOrdered
				m.order(p, at)
				orders = append(orders, k)
			}
		}
		finished, _, open := m.count(i)
		// Failures acknowledged by a resume are out of the count.
		total := len(w.Devices) - w.Acknowledged
		if finished*100 >= m.c.SuccessPercent*total {
			w.State = store.WaveSucceeded
			m.c.Updated = at
			continue
		}
		if open == 0 {
			// Every device is done and the wave still fell short: without
			// this it would wait forever for a success that cannot come.
			m.setState(store.CampaignPaused, fmt.Sprintf("wave %d: only %d of %d devices finished, under the success threshold of %d%%",
				i+1, finished, total, m.c.SuccessPercent), at)
		}
		return orders
	}
	// Every wave has succeeded; the campaign is over once no device is
	// still on its way.
	for _, t := range m.tally() {
		if t.open > 0 {
			return orders
		}
	}
	m.setState(store.CampaignFinished, "every wave succeeded", at)
	return orders
}
