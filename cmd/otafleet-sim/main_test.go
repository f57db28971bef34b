package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestSetGCTarget: the simulator sets GOGC=25 and the soft memory limit for
// its devices unless the environment sets GOGC or GOMEMLIMIT, which the
// runtime has applied then and the simulator leaves alone; an empty
// variable is unset, as the runtime reads it.
func TestSetGCTarget(t *testing.T) {
	const n = 3000
	const untouchedPercent, untouchedLimit = 100, int64(math.MaxInt64)
	cases := []struct {
		name        string
		env         map[string]string
		set         bool
		wantPercent int
		wantLimit   int64
	}{
		{"unset", nil, true, 25, 64<<20 + n*88<<10},
		{"empty", map[string]string{"GOGC": "", "GOMEMLIMIT": ""}, true, 25, 64<<20 + n*88<<10},
		{"GOGC", map[string]string{"GOGC": "100"}, false, untouchedPercent, untouchedLimit},
		{"GOGC off", map[string]string{"GOGC": "off"}, false, untouchedPercent, untouchedLimit},
		{"GOMEMLIMIT", map[string]string{"GOMEMLIMIT": "1GiB"}, false, untouchedPercent, untouchedLimit},
		{"both", map[string]string{"GOGC": "50", "GOMEMLIMIT": "1GiB"}, false, untouchedPercent, untouchedLimit},
	}
	percent := debug.SetGCPercent(untouchedPercent)
	limit := debug.SetMemoryLimit(untouchedLimit)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			debug.SetGCPercent(untouchedPercent)
			debug.SetMemoryLimit(untouchedLimit)
			set := setGCTarget(n, func(k string) string { return c.env[k] })
			gotPercent := debug.SetGCPercent(untouchedPercent)
			gotLimit := debug.SetMemoryLimit(-1)
			if set != c.set || gotPercent != c.wantPercent || gotLimit != c.wantLimit {
				t.Errorf("env %v: set %v, GOGC %d, memory limit %d; want %v, %d, %d",
					c.env, set, gotPercent, gotLimit, c.set, c.wantPercent, c.wantLimit)
			}
		})
	}
}
