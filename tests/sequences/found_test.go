package sequences

import (
	"context"
	"fmt"
	"testing"

	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/ports/all"
)

// TestSequences_Found replays sequences the random tester broke a promise
// on, by the seed it printed, on the port it ran: each must now keep every
// promise. A seed names the steps (generate), so the case is the very
// sequence that was found, not a hand-made likeness of it.
func TestSequences_Found(t *testing.T) {
	cases := []struct {
		board string
		seed  uint64
		cport bool
		why   string
	}{
		// A key set had revoked the only key of another algorithm; an
		// image signed with it was refused only once written, and the
		// install pending before it was cancelled to make room.
		{"nrf5340-dk", 1000472, false, "pending-kept: a refused image cancelled the pending install"},
		// The power went after the last flash operation of a command
		// that succeeded; the tester then asked the device, whose power
		// was off, for its status.
		{"nrf52840-dk-xip", 1000212, false, "status: install --resume, then the power goes"},
		{"nrf52840-dk", 1000212, true, "status: install --resume, then the power goes"},
		{"nrf52840-dk", 1000228, true, "boots: boot, then the power goes"},
		{"nrf5340-dk", 1000215, true, "boots: boot, then the power goes"},
		{"esp32-devkitc", 1000073, true, "boots: boot, then the power goes"},
		{"esp32-devkitc", 1000212, true, "status: install --resume, then the power goes"},
		{"nodemcu-esp8266", 1000006, true, "boots: boot, then the power goes"},
		{"nodemcu-esp8266", 1000037, true, "boots: boot, then the power goes"},
	}
	ctx := context.Background()
	for _, c := range cases {
		port := map[bool]string{false: "go", true: "c"}[c.cport]
		t.Run(fmt.Sprintf("%s/%d/%s", c.board, c.seed, port), func(t *testing.T) {
			l, ok := haltest.Layout(c.board)
			if e, found := all.Lookup(c.board); found {
				l, ok = e.Layout(), true
			}
			if !ok {
				t.Fatalf("board %s is neither in the catalog nor in core/hal/haltest", c.board)
			}
			f, err := newFixture(ctx, c.board, l, t.TempDir(), c.cport)
			if err != nil {
				t.Fatal(err)
			}
			steps := generate(c.seed, seqLen)
			if fl, _ := run(ctx, f, steps); fl != nil {
				t.Errorf("found before as %q; step %d breaks a promise: %v\n%s", c.why, fl.at+1, fl.v, otarun(f, steps[:fl.at+1], fl))
			}
		})
	}
}
