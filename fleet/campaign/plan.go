package campaign

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/otaport/otaport/fleet/store"
)

// WaveSpec is one wave as the operator wrote it: a cumulative device count
// or a cumulative percentage of the target. "1,10%,100%" means one device,
// then up to a tenth of the fleet, then the rest.
type WaveSpec struct {
	Count   int  // when !Percent
	Percent bool // Count is then a percentage, 0..100
	Text    string
}

// ParseWaves parses a comma-separated wave list such as "1,10%,100%".
func ParseWaves(s string) ([]WaveSpec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("waves %q: empty; give counts or percentages such as 1,10%%,100%%", s)
	}
	var out []WaveSpec
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		w := WaveSpec{Text: f}
		num := f
		if strings.HasSuffix(f, "%") {
			w.Percent, num = true, strings.TrimSuffix(f, "%")
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 0 || (w.Percent && n > 100) {
			return nil, fmt.Errorf("waves %q: %q is not a device count or a percentage 0%%..100%%", s, f)
		}
		w.Count = n
		out = append(out, w)
	}
	if len(out) > 500 {
		// hawkBit's limit; more waves than this is a mistake, not a plan.
		return nil, fmt.Errorf("waves %q: %d waves, at most 500", s, len(out))
	}
	return out, nil
}

// Plan splits devices (already in a stable order) into waves. Each spec is
// cumulative and clamped to the number of devices; a spec that adds nothing
// makes an empty wave (which counts as a success). The last wave must reach
// every device, so that no target is silently left out.
func Plan(devices []string, specs []WaveSpec) ([]store.Wave, error) {
	total := len(devices)
	var waves []store.Wave
	prev := 0
	for i, s := range specs {
		upto := s.Count
		if s.Percent {
			upto = (s.Count*total + 99) / 100 // rounded up: 10% of 5 is 1, not 0
		}
		upto = min(upto, total)
		if upto < prev {
			return nil, fmt.Errorf("wave %d (%s) covers %d devices, fewer than wave %d before it (%d): waves are cumulative",
				i+1, s.Text, upto, i, prev)
		}
		waves = append(waves, store.Wave{Spec: s.Text, Devices: append([]string{}, devices[prev:upto]...), State: store.WaveWaiting})
		prev = upto
	}
	if prev < total {
		return nil, fmt.Errorf("waves reach %d of the %d target devices: end with 100%%", prev, total)
	}
	return waves, nil
}

// NewCampaign builds a campaign ready to Start: its waves and every device's
// initial progress. versions gives each device's running version as the
// registry knows it (to recognise a rollback later).
func NewCampaign(c store.Campaign, devices []string, specs []WaveSpec, versions map[string]string) (store.Campaign, []store.Progress, error) {
	if c.SuccessPercent < 0 || c.SuccessPercent > 100 {
		return c, nil, fmt.Errorf("success threshold %d%%: give 0..100", c.SuccessPercent)
	}
	if c.ErrorPercent < 0 || c.ErrorPercent > 100 {
		return c, nil, fmt.Errorf("error threshold %d%%: give 0..100", c.ErrorPercent)
	}
	waves, err := Plan(devices, specs)
	if err != nil {
		return c, nil, err
	}
	c.Waves = waves
	c.State = store.CampaignRunning
	var ps []store.Progress
	for wi, w := range waves {
		for _, k := range w.Devices {
			ps = append(ps, store.Progress{Device: k, Wave: wi, State: store.ProgressPending, FromVersion: versions[k]})
		}
	}
	return c, ps, nil
}
