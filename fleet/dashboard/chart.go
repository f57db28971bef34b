package dashboard

import (
	"fmt"
	"html"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/otaport/otaport/fleet/store"
)

// event is a change of a device's version, as the campaigns recorded it:
// the fleet keeps no separate history, so the one source is each device's
// part in each campaign (its version before, and whether it confirmed).
type event struct {
	at      time.Time
	version string // "" when the event says nothing of the version (a failure)
	how     string
}

type history struct {
	events map[string][]event
	orders map[string][]orderRow
}

// history rebuilds the devices' versions over time from the campaigns: the
// version a device had before its first campaign, from when it was added;
// the campaign's version when it confirmed one; a failure as an event that
// keeps the version (a rollback returns to it). A version a device reports
// outside any campaign shows only as its current one.
func (d *Dashboard) history(devs []store.Device) (history, error) {
	h := history{events: map[string][]event{}, orders: map[string][]orderRow{}}
	want := map[string]bool{}
	for _, dev := range devs {
		want[dev.Key()] = true
	}
	cs, err := d.cfg.Store.Campaigns()
	if err != nil {
		return h, err
	}
	first := map[string]string{} // device -> version before its first campaign
	for _, c := range cs {
		st, err := d.cfg.Campaigns.Status(c.ID)
		if err != nil {
			return h, err
		}
		for _, p := range st.Devices {
			if !want[p.Device] {
				continue
			}
			img, _ := st.Campaign.Image(p)
			h.orders[p.Device] = append(h.orders[p.Device], orderRow{Campaign: c.ID, Version: img.Version, Progress: p})
			if _, ok := first[p.Device]; !ok && p.FromVersion != "" {
				first[p.Device] = p.FromVersion
			}
			switch p.State {
			case store.ProgressFinished:
				h.events[p.Device] = append(h.events[p.Device], event{at: p.Updated, version: img.Version,
					how: fmt.Sprintf("confirmed in campaign %d", c.ID)})
			case store.ProgressFailed:
				h.events[p.Device] = append(h.events[p.Device], event{at: p.Updated,
					how: fmt.Sprintf("failed in campaign %d: %s", c.ID, p.Reason)})
			}
		}
	}
	for _, dev := range devs {
		k := dev.Key()
		v, ok := first[k]
		if !ok {
			v = dev.Version
		}
		evs := append([]event{{at: dev.Added, version: v, how: "added"}}, h.events[k]...)
		slices.SortStableFunc(evs, func(a, b event) int { return a.at.Compare(b.at) })
		h.events[k] = evs
	}
	return h, nil
}

// versionAt is a device's version at t by its events, the last one that
// named a version.
func versionAt(evs []event, t time.Time) string {
	v := ""
	for _, e := range evs {
		if e.at.After(t) {
			break
		}
		if e.version != "" {
			v = e.version
		}
	}
	return v
}

var palette = []string{"#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"}

// versionChart draws, as inline SVG, how many devices ran each version over
// time: one step line per version, from the first device added to now (where
// the devices' reported versions are the figures).
func versionChart(h history, devs []store.Device, now time.Time) template.HTML {
	if len(devs) == 0 {
		return template.HTML(`<p class="muted">No devices yet.</p>`)
	}
	var times []time.Time
	for _, evs := range h.events {
		for _, e := range evs {
			times = append(times, e.at)
		}
	}
	times = append(times, now)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	times = slices.CompactFunc(times, func(a, b time.Time) bool { return a.Equal(b) })

	counts := make([]map[string]int, len(times))
	seen := map[string]bool{}
	var versions []string
	for i, t := range times {
		counts[i] = map[string]int{}
		for _, dev := range devs {
			v := versionAt(h.events[dev.Key()], t)
			if i == len(times)-1 {
				v = dev.Version // now: what the device reports
			}
			if v == "" {
				continue
			}
			counts[i][v]++
			if !seen[v] {
				seen[v] = true
				versions = append(versions, v)
			}
		}
	}
	const W, H, left, right, top, bottom = 720.0, 220.0, 40.0, 10.0, 10.0, 30.0
	t0, t1 := times[0], times[len(times)-1]
	span := t1.Sub(t0).Seconds()
	x := func(t time.Time) float64 {
		if span <= 0 {
			return left
		}
		return left + (W-left-right)*t.Sub(t0).Seconds()/span
	}
	n := float64(len(devs))
	y := func(c int) float64 { return top + (H-top-bottom)*(1-float64(c)/n) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="devices per version over time">`, W, H)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" class="axis"/>`, left, y(0), W-right, y(0))
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" class="axis"/>`, left, y(0), left, y(len(devs)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="tick" text-anchor="end">%d</text>`, left-4, y(len(devs))+4, len(devs))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="tick" text-anchor="end">0</text>`, left-4, y(0)+4)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="tick">%s</text>`, left, H-8, t0.UTC().Format("Jan 2 15:04:05"))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="tick" text-anchor="end">%s</text>`, W-right, H-8, t1.UTC().Format("Jan 2 15:04:05"))
	for vi, v := range versions {
		var pts []string
		for i, t := range times {
			c := counts[i][v]
			if i > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(t), y(counts[i-1][v])))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(t), y(c)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`,
			palette[vi%len(palette)], strings.Join(pts, " "), html.EscapeString(v))
	}
	b.WriteString(`</svg><ul class="legend">`)
	last := counts[len(counts)-1]
	for vi, v := range versions {
		fmt.Fprintf(&b, `<li><span class="swatch" style="background:%s"></span>%s: %d</li>`, palette[vi%len(palette)], html.EscapeString(v), last[v])
	}
	b.WriteString(`</ul>`)
	return template.HTML(b.String()) // every value from the fleet is escaped above
}
