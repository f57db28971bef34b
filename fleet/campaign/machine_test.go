package campaign

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/fleet/store"
)

const target = "2.0.0"

// step is one event fed to the machine and the orders it must produce.
type step struct {
	ev      Event
	orders  []string
	wantErr error
}

func prog(dev string, s int) step { return step{ev: Event{Kind: event.Progress, Device: dev, Step: s}} }
func informs(dev, v string, orders ...string) step {
	return step{ev: Event{Kind: event.Inform, Device: dev, Version: v}, orders: orders}
}
func op(k event.Kind, orders ...string) step { return step{ev: Event{Kind: k}, orders: orders} }
func progOrders(dev string, s int, orders ...string) step {
	st := prog(dev, s)
	st.orders = orders
	return st
}

func devs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("pk/d%d", i)
	}
	return out
}

func TestMachine(t *testing.T) {
	tests := []struct {
		name          string
		devices       int
		waves         string
		success, fail int
		startOrders   []string
		steps         []step
		state         store.CampaignState
		reason        string // substring
		waveStates    []store.WaveState
		devStates     map[string]store.ProgressState
	}{
		{
			name: "start orders only the first wave", devices: 4, waves: "1,100%", success: 100, fail: 0,
			startOrders: []string{"pk/d0"},
			state:       store.CampaignRunning, waveStates: []store.WaveState{store.WaveRunning, store.WaveWaiting},
			devStates: map[string]store.ProgressState{"pk/d0": store.ProgressOrdered, "pk/d1": store.ProgressPending},
		},
		{
			name: "confirmed version finishes a device and starts the next wave", devices: 4, waves: "1,100%", success: 100,
			startOrders: []string{"pk/d0"},
			steps:       []step{prog("pk/d0", 50), prog("pk/d0", 100), informs("pk/d0", target, "pk/d1", "pk/d2", "pk/d3")},
			state:       store.CampaignRunning, waveStates: []store.WaveState{store.WaveSucceeded, store.WaveRunning},
			devStates: map[string]store.ProgressState{"pk/d0": store.ProgressFinished, "pk/d1": store.ProgressOrdered},
		},
		{
			name: "the target version written another way is the target (image.SameVersion)", devices: 1, waves: "100%", success: 100,
			startOrders: devs(1),
			steps:       []step{prog("pk/d0", 100), informs("pk/d0", "2.0")},
			state:       store.CampaignFinished, waveStates: []store.WaveState{store.WaveSucceeded},
			devStates: map[string]store.ProgressState{"pk/d0": store.ProgressFinished},
		},
		{
			name: "success threshold is finished/total >= threshold", devices: 10, waves: "5,100%", success: 80, fail: 100,
			startOrders: devs(5),
			steps: []step{
				informs("pk/d0", target), informs("pk/d1", target), informs("pk/d2", target),
				informs("pk/d3", target, devs(10)[5:]...), // 4 of 5 = 80 %
			},
			state: store.CampaignRunning, waveStates: []store.WaveState{store.WaveSucceeded, store.WaveRunning},
		},
		{
			name: "error threshold is strictly greater: at the threshold it runs on", devices: 5, waves: "100%", success: 100, fail: 20,
			startOrders: devs(5),
			steps:       []step{prog("pk/d0", -2)},
			state:       store.CampaignRunning,
			devStates:   map[string]store.ProgressState{"pk/d0": store.ProgressFailed},
		},
		{
			name: "error threshold exceeded pauses the campaign", devices: 5, waves: "100%", success: 100, fail: 20,
			startOrders: devs(5),
			steps:       []step{prog("pk/d0", -2), prog("pk/d1", -3)},
			state:       store.CampaignPaused, reason: "2 of 5 devices failed",
		},
		{
			name: "empty wave counts as success and the cascade goes on", devices: 4, waves: "2,2,100%", success: 100, fail: 100,
			startOrders: devs(2),
			steps:       []step{informs("pk/d0", target), informs("pk/d1", target, "pk/d2", "pk/d3")},
			state:       store.CampaignRunning,
			waveStates:  []store.WaveState{store.WaveSucceeded, store.WaveSucceeded, store.WaveRunning},
		},
		{
			name: "every wave succeeded and every device done finishes the campaign", devices: 2, waves: "1,100%", success: 50, fail: 100,
			startOrders: []string{"pk/d0"},
			steps:       []step{informs("pk/d0", target, "pk/d1"), informs("pk/d1", target)},
			state:       store.CampaignFinished,
			waveStates:  []store.WaveState{store.WaveSucceeded, store.WaveSucceeded},
		},
		{
			name: "the last wave succeeded but a device is still upgrading: still running", devices: 2, waves: "100%", success: 50, fail: 100,
			startOrders: devs(2),
			steps:       []step{informs("pk/d0", target), prog("pk/d1", 30)},
			state:       store.CampaignRunning, waveStates: []store.WaveState{store.WaveSucceeded},
			devStates: map[string]store.ProgressState{"pk/d1": store.ProgressRunning},
		},
		{
			// Before, a paused campaign showed its wave as running.
			name: "a paused campaign shows its wave paused, and running again once resumed", devices: 2, waves: "1,100%", success: 100, fail: 100,
			startOrders: []string{"pk/d0"},
			steps:       []step{op(event.Pause)},
			state:       store.CampaignPaused, waveStates: []store.WaveState{store.WavePaused, store.WaveWaiting},
		},
		{
			name: "resumed after a pause: the wave runs again", devices: 2, waves: "1,100%", success: 100, fail: 100,
			startOrders: []string{"pk/d0"},
			steps:       []step{op(event.Pause), op(event.Resume)},
			state:       store.CampaignRunning, waveStates: []store.WaveState{store.WaveRunning, store.WaveWaiting},
		},
		{
			name: "a canceled campaign shows its unfinished waves canceled", devices: 2, waves: "1,100%", success: 100, fail: 100,
			startOrders: []string{"pk/d0"},
			steps:       []step{op(event.Cancel)},
			state:       store.CampaignCanceled, waveStates: []store.WaveState{store.WaveCanceled, store.WaveCanceled},
		},
		{
			// Before, the resume paused the campaign again at once (every
			// device of the wave was done and short of the success
			// threshold), and `campaign resume` printed "paused".
			name: "resume acknowledges the failures: a wave whose devices all failed lets the next one start", devices: 2, waves: "1,100%", success: 100, fail: 0,
			startOrders: []string{"pk/d0"},
			steps:       []step{prog("pk/d0", -2), op(event.Resume, "pk/d1")},
			state:       store.CampaignRunning, waveStates: []store.WaveState{store.WaveSucceeded, store.WaveRunning},
		},
		{
			name: "after a resume the success threshold counts the wave without the acknowledged failures", devices: 4, waves: "100%", success: 100, fail: 60,
			startOrders: devs(4),
			steps:       []step{prog("pk/d0", -2), prog("pk/d1", -2), prog("pk/d2", -2), op(event.Resume), informs("pk/d3", target)},
			state:       store.CampaignFinished, waveStates: []store.WaveState{store.WaveSucceeded},
		},
		{
			name: "after a resume the error threshold counts anew: one failure of the two left is at 50%, not over", devices: 4, waves: "100%", success: 100, fail: 50,
			startOrders: devs(4),
			steps:       []step{prog("pk/d0", -2), prog("pk/d1", -2), op(event.Pause), op(event.Resume), prog("pk/d2", -2)},
			state:       store.CampaignRunning, waveStates: []store.WaveState{store.WaveRunning},
		},
		{
			name: "after a resume the error threshold still pauses on new failures", devices: 4, waves: "100%", success: 100, fail: 0,
			startOrders: devs(4),
			steps:       []step{prog("pk/d0", -2), op(event.Resume), prog("pk/d1", -2)},
			state:       store.CampaignPaused, reason: "1 of 3 devices failed since the last resume", waveStates: []store.WaveState{store.WavePaused},
		},
		{
			name: "old version after progress is a rollback", devices: 1, waves: "100%", success: 100, fail: 100,
			startOrders: devs(1),
			steps:       []step{informs("pk/d0", "1.0.0", "pk/d0"), prog("pk/d0", 100), informs("pk/d0", "1.0.0")},
			state:       store.CampaignPaused, reason: "only 0 of 1 devices finished",
			devStates: map[string]store.ProgressState{"pk/d0": store.ProgressFailed},
		},
		{
			name: "old version before any progress is a reconnect: order again", devices: 1, waves: "100%", success: 100, fail: 0,
			startOrders: devs(1),
			steps:       []step{informs("pk/d0", "1.0.0", "pk/d0"), informs("pk/d0", "1.0.0", "pk/d0")},
			state:       store.CampaignRunning,
			devStates:   map[string]store.ProgressState{"pk/d0": store.ProgressOrdered},
		},
		{
			name: "steps from a device not yet ordered are ignored", devices: 2, waves: "1,100%", success: 100, fail: 0,
			startOrders: []string{"pk/d0"},
			steps:       []step{prog("pk/d1", -1), informs("pk/d1", target)},
			state:       store.CampaignRunning,
			devStates:   map[string]store.ProgressState{"pk/d1": store.ProgressPending},
		},
		{
			name: "pause holds the next wave until resume", devices: 2, waves: "1,100%", success: 100, fail: 0,
			startOrders: []string{"pk/d0"},
			steps:       []step{op(event.Pause), informs("pk/d0", target), op(event.Resume, "pk/d1")},
			state:       store.CampaignRunning, waveStates: []store.WaveState{store.WaveSucceeded, store.WaveRunning},
		},
		{
			name: "resume after an error pause goes on until the next failure", devices: 4, waves: "100%", success: 50, fail: 0,
			startOrders: devs(4),
			steps: []step{
				progOrders("pk/d0", -1), op(event.Resume), informs("pk/d1", target), prog("pk/d2", -4),
			},
			state: store.CampaignPaused, reason: "1 of 3 devices failed since the last resume",
		},
		{
			name: "an ended wave under the success threshold pauses instead of waiting forever", devices: 2, waves: "100%", success: 100, fail: 60,
			startOrders: devs(2),
			steps:       []step{informs("pk/d0", target), prog("pk/d1", -1)},
			state:       store.CampaignPaused, reason: "only 1 of 2 devices finished",
		},
		{
			name: "cancel stops orders and cancels pending devices", devices: 3, waves: "1,100%", success: 100, fail: 0,
			startOrders: []string{"pk/d0"},
			steps:       []step{op(event.Cancel), informs("pk/d0", target), {ev: Event{Kind: event.Resume}, wantErr: ErrState}},
			state:       store.CampaignCanceled,
			devStates: map[string]store.ProgressState{
				"pk/d0": store.ProgressFinished, "pk/d1": store.ProgressCanceled, "pk/d2": store.ProgressCanceled,
			},
		},
		{
			name: "operator actions out of state are refused", devices: 1, waves: "100%", success: 100, fail: 0,
			startOrders: devs(1),
			steps: []step{
				{ev: Event{Kind: event.Resume}, wantErr: ErrState}, op(event.Pause), {ev: Event{Kind: event.Pause}, wantErr: ErrState},
			},
			state: store.CampaignPaused,
		},
		{
			name: "an empty target finishes at once", devices: 0, waves: "100%", success: 100, fail: 0,
			state: store.CampaignFinished,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, err := ParseWaves(tt.waves)
			if err != nil {
				t.Fatal(err)
			}
			c, ps, err := NewCampaign(store.Campaign{ID: 1, Images: []store.CampaignImage{{ID: 1, Version: target}}, SuccessPercent: tt.success, ErrorPercent: tt.fail},
				devs(tt.devices), specs, nil)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Unix(0, 0)
			m := NewMachine(c, ps)
			if got := m.Start(at); !sameList(got, tt.startOrders) {
				t.Fatalf("Start orders = %v, want %v", got, tt.startOrders)
			}
			for i, st := range tt.steps {
				st.ev.At = at
				got, err := m.Apply(st.ev)
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("step %d (%+v): err = %v, want %v", i, st.ev, err, st.wantErr)
				}
				if !sameList(got, st.orders) {
					t.Fatalf("step %d (%+v): orders = %v, want %v", i, st.ev, got, st.orders)
				}
			}
			got := m.Campaign()
			if got.State != tt.state {
				t.Errorf("state = %s (%s), want %s", got.State, got.Reason, tt.state)
			}
			if !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("reason = %q, want it to contain %q", got.Reason, tt.reason)
			}
			if tt.waveStates != nil {
				var ws []store.WaveState
				for _, w := range got.Waves {
					ws = append(ws, w.State)
				}
				if !reflect.DeepEqual(ws, tt.waveStates) {
					t.Errorf("wave states = %v, want %v", ws, tt.waveStates)
				}
			}
			for dev, want := range tt.devStates {
				if p, _ := m.Device(dev); p.State != want {
					t.Errorf("%s state = %s (%s), want %s", dev, p.State, p.Reason, want)
				}
			}
		})
	}
}

func sameList(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

func TestMachine_ChangedReportsEachTouchedDeviceOnce(t *testing.T) {
	specs, _ := ParseWaves("100%")
	c, ps, err := NewCampaign(store.Campaign{ID: 1, Images: []store.CampaignImage{{ID: 1, Version: target}}, SuccessPercent: 100}, devs(3), specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMachine(c, ps)
	m.Start(time.Unix(0, 0))
	if got := len(m.Changed()); got != 3 {
		t.Fatalf("changed after start = %d, want 3", got)
	}
	m.Apply(Event{Kind: event.Progress, Device: "pk/d1", Step: 10})
	m.Apply(Event{Kind: event.Progress, Device: "pk/d1", Step: 20})
	ch := m.Changed()
	if len(ch) != 1 || ch[0].Device != "pk/d1" || ch[0].Step != 20 {
		t.Fatalf("changed = %+v, want only pk/d1 at step 20", ch)
	}
	if got := m.Changed(); len(got) != 0 {
		t.Fatalf("changed twice: %+v", got)
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		waves   string
		n       int
		sizes   []int
		wantErr string
	}{
		{"1,10%,100%", 40, []int{1, 3, 36}, ""},
		{"10%,100%", 5, []int{1, 4}, ""},
		{"1,1,100%", 3, []int{1, 0, 2}, ""},
		{"5,100", 3, []int{3, 0}, ""},
		{"100%", 0, []int{0}, ""},
		{"1,10%", 40, nil, "end with 100%"},
		{"50%,10%", 10, nil, "cumulative"},
		{"abc", 3, nil, "not a device count"},
		{"101%", 3, nil, "not a device count"},
		{"", 3, nil, "empty"},
	}
	for _, tt := range tests {
		specs, err := ParseWaves(tt.waves)
		var waves []store.Wave
		if err == nil {
			waves, err = Plan(devs(tt.n), specs)
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q over %d: err = %v, want %q", tt.waves, tt.n, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q over %d: %v", tt.waves, tt.n, err)
			continue
		}
		var sizes []int
		for _, w := range waves {
			sizes = append(sizes, len(w.Devices))
		}
		if !reflect.DeepEqual(sizes, tt.sizes) {
			t.Errorf("%q over %d: sizes %v, want %v", tt.waves, tt.n, sizes, tt.sizes)
		}
	}
}

func FuzzParseWaves(f *testing.F) {
	for _, s := range []string{"1,10%,100%", "100%", "", "5,,", "-1", "99999999999999999999%"} {
		f.Add(s, 17)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		specs, err := ParseWaves(s)
		if err != nil {
			return
		}
		n = n & 1023
		waves, err := Plan(devs(n), specs)
		if err != nil {
			return
		}
		seen := 0
		for _, w := range waves {
			seen += len(w.Devices)
		}
		if seen != n {
			t.Fatalf("%q over %d devices: waves hold %d", s, n, seen)
		}
	})
}

// The waves' tallies, kept up to date as devices change, always agree with
// counting every device again, whether events go to the machine or to
// drafts committed to it.
func TestMachine_TalliesAgreeWithACount(t *testing.T) {
	specs, err := ParseWaves("10%,30%,100%")
	if err != nil {
		t.Fatal(err)
	}
	keys := devs(200)
	c, ps, err := NewCampaign(store.Campaign{ID: 1, Images: []store.CampaignImage{{ID: 1, Version: target}}, SuccessPercent: 80, ErrorPercent: 60}, keys, specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMachine(c, ps)
	at := time.Unix(0, 0)
	m.Start(at)
	rng := rand.New(rand.NewPCG(1, 2))
	recount := func(m *Machine) []tally {
		out := make([]tally, len(m.c.Waves))
		for i, w := range m.c.Waves {
			for _, k := range w.Devices {
				out[i].add(m.mustGet(k).State, 1)
			}
		}
		return out
	}
	random := func() Event {
		dev := keys[rng.IntN(len(keys))]
		switch rng.IntN(10) {
		case 0:
			return Event{Kind: event.Progress, Device: dev, Step: -1, Desc: "failed", At: at}
		case 1, 2, 3:
			return Event{Kind: event.Progress, Device: dev, Step: rng.IntN(100), At: at}
		case 4:
			return Event{Kind: event.Pause, At: at}
		case 5:
			return Event{Kind: event.Resume, At: at}
		default:
			return Event{Kind: event.Inform, Device: dev, Version: target, At: at}
		}
	}
	for i := range 3000 {
		if rng.IntN(2) == 0 {
			m.Apply(random())
		} else {
			d := m.Draft()
			for range 1 + rng.IntN(20) {
				d.Apply(random())
			}
			if want := recount(d); !reflect.DeepEqual(d.tally(), want) {
				t.Fatalf("step %d: the draft's tallies %+v; counting gives %+v", i, d.tallies, want)
			}
			if rng.IntN(4) > 0 {
				m.Commit(d)
			}
		}
		if want := recount(m); !reflect.DeepEqual(m.tally(), want) {
			t.Fatalf("step %d: tallies %+v; counting gives %+v", i, m.tallies, want)
		}
	}
}
