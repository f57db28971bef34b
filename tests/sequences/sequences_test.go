package sequences

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/ports/all"
)

// seqLen is the number of steps of one sequence: long enough for an
// install, its trial, a revert and what a user does after it.
const seqLen = 24

// config is one run of the suite.
type config struct {
	steps   int    // at least this many steps in all
	seed    uint64 // the seed of sequence i on board b is derived from it
	workers int
	cport   bool // the device runs the C port (ports/cport), not core/boot's
}

// configFromEnv reads OTAPORT_SEQUENCES (sample or full),
// OTAPORT_SEQUENCES_STEPS and OTAPORT_SEQUENCES_SEED.
func configFromEnv(t *testing.T) config {
	mode := os.Getenv("OTAPORT_SEQUENCES")
	c := config{seed: 1, workers: runtime.GOMAXPROCS(0)}
	switch mode {
	case "", "sample":
		// Four sequences per catalog board; one under the race
		// detector, so that make test stays quick.
		c.steps = 15 * 4 * seqLen
		if raceEnabled {
			c.steps = 15 * seqLen
		}
	case "full":
		c.steps = 1_000_000
	default:
		t.Fatalf("OTAPORT_SEQUENCES=%q: want sample or full", mode)
	}
	if s := os.Getenv("OTAPORT_SEQUENCES_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("OTAPORT_SEQUENCES_STEPS=%q: want a positive number of steps", s)
		}
		c.steps = n
	}
	if s := os.Getenv("OTAPORT_SEQUENCES_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("OTAPORT_SEQUENCES_SEED=%q: want a number", s)
		}
		c.seed = n
	}
	switch port := os.Getenv("OTAPORT_SEQUENCES_PORT"); port {
	case "c":
		c.cport = true
	case "", "go":
	default:
		t.Fatalf("OTAPORT_SEQUENCES_PORT=%q: want go, c or nothing", port)
	}
	return c
}

// job is one sequence to play.
type job struct {
	board int
	seed  uint64
}

// found is the first sequence that broke a rule on a scheme.
type found struct {
	board int
	seed  uint64
	steps []step
	fl    *failure
}

// TestSequences plays random sequences on every catalog board and checks
// every step against the model; a broken promise is shrunk and printed as
// otarun commands.
//
// OTAPORT_SEQUENCES_PORT=c plays them on the C port (ports/cport) instead
// of core/boot's Go port.
func TestSequences(t *testing.T) {
	play(t, configFromEnv(t))
}

// play plays cfg's sequences and reports what broke.
func play(t *testing.T, cfg config) {
	ctx := context.Background()
	dir := t.TempDir()

	cat := boards(t)
	if cfg.cport {
		// The boards of haltest outside the catalog are not in the C
		// port.
		cat = slices.DeleteFunc(cat, func(l hal.Layout) bool {
			_, ok := all.Lookup(l.Board)
			return !ok
		})
	}
	fixtures := make([]*fixture, len(cat))
	var wg sync.WaitGroup
	errs := make([]error, len(cat))
	sem := make(chan struct{}, cfg.workers)
	for i, l := range cat {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			fixtures[i], errs[i] = newFixture(ctx, l.Board, l, dir, cfg.cport)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	jobs := make(chan job)
	go func() {
		defer close(jobs)
		n := (cfg.steps + seqLen - 1) / seqLen
		for i := range n {
			jobs <- job{board: i % len(fixtures), seed: cfg.seed*1_000_003 + uint64(i)}
		}
	}()
	var (
		mu         sync.Mutex
		total      = newCounts()
		perBoard   = map[string]int{}
		violations int
		first      = map[string][]*found{} // rule/scheme -> the first few sequences
	)
	for range cfg.workers {
		wg.Go(func() {
			local, board := newCounts(), map[string]int{}
			var mine []*found
			bad := 0
			for j := range jobs {
				f := fixtures[j.board]
				steps := generate(j.seed, seqLen)
				fl, c := run(ctx, f, steps)
				local.add(c)
				n := 0
				for _, v := range c.steps {
					n += v
				}
				board[f.name] += n
				if fl != nil {
					bad++
					mine = append(mine, &found{board: j.board, seed: j.seed, steps: steps, fl: fl})
				}
			}
			mu.Lock()
			defer mu.Unlock()
			total.add(local)
			for k, v := range board {
				perBoard[k] += v
			}
			violations += bad
			for _, fd := range mine {
				key := fd.fl.v.Rule + " on " + string(fixtures[fd.board].layout.Scheme)
				if len(first[key]) < 3 {
					first[key] = append(first[key], fd)
				}
			}
		})
	}
	wg.Wait()

	// Shrink the first few sequences of each broken rule and scheme and
	// print the shortest: a fewer-step reproduction is easier to read.
	for _, key := range slices.Sorted(maps.Keys(first)) {
		var best *found
		for _, fd := range first[key] {
			f := fixtures[fd.board]
			steps, fl := shrink(ctx, f, fd.steps, fd.fl.v.Rule)
			if fl == nil {
				steps, fl = fd.steps[:fd.fl.at+1], fd.fl
			}
			if best == nil || len(steps) < len(best.steps) || len(steps) == len(best.steps) && cuts(steps) < cuts(best.steps) {
				best = &found{board: fd.board, seed: fd.seed, steps: steps, fl: fl}
			}
		}
		f := fixtures[best.board]
		t.Errorf("violation %s (board %s, seed %d, shrunk to %d steps):\n  %v\n%s", key, f.name, best.seed, len(best.steps), best.fl.v, otarun(f, best.steps, best.fl))
	}

	t.Log(report(total, perBoard, fixtures, violations))
}

// boards returns the layouts the suite runs on: every catalog board, then
// the boards of core/hal/haltest the catalog does not hold (the swap board),
// or those OTAPORT_SEQUENCES_BOARDS names (a,b).
func boards(t *testing.T) []hal.Layout {
	var ls []hal.Layout
	for _, e := range all.Catalog() {
		ls = append(ls, e.Layout())
	}
	for _, n := range haltest.Extra() {
		if _, ok := all.Lookup(n); !ok {
			l, _ := haltest.Layout(n)
			ls = append(ls, l)
		}
	}
	s := os.Getenv("OTAPORT_SEQUENCES_BOARDS")
	if s == "" {
		return ls
	}
	var picked []hal.Layout
	for _, n := range strings.Split(s, ",") {
		i := slices.IndexFunc(ls, func(l hal.Layout) bool { return l.Board == n })
		if i < 0 {
			t.Fatalf("OTAPORT_SEQUENCES_BOARDS: board %q is neither in the catalog nor in core/hal/haltest", n)
		}
		picked = append(picked, ls[i])
	}
	return picked
}

// report is the closing summary: counts per step kind, per cut, per board
// and scheme, and the line `sequences: N steps over B boards, M violations`.
func report(c counts, perBoard map[string]int, fixtures []*fixture, violations int) string {
	var b strings.Builder
	n := 0
	b.WriteString("steps per kind:\n")
	for _, k := range slices.Sorted(maps.Keys(c.steps)) {
		fmt.Fprintf(&b, "  %-26s %9d\n", k, c.steps[k])
		n += c.steps[k]
	}
	cuts := 0
	for _, v := range c.cuts {
		cuts += v
	}
	fmt.Fprintf(&b, "power cuts: %d (before %d, after %d, torn %d); %d more armed past the command's last flash operation\n",
		cuts, c.cuts["before"], c.cuts["after"], c.cuts["torn"], c.armed)
	b.WriteString("steps per board:\n")
	schemes := map[hal.Scheme]int{}
	for _, f := range fixtures {
		fmt.Fprintf(&b, "  %-20s %-12s %9d\n", f.name, f.layout.Scheme, perBoard[f.name])
		schemes[f.layout.Scheme] += perBoard[f.name]
	}
	for _, s := range slices.Sorted(maps.Keys(schemes)) {
		fmt.Fprintf(&b, "  %-33s %9d\n", "all "+string(s), schemes[s])
	}
	fmt.Fprintf(&b, "sequences: %d steps over %d boards, %d violations\n", n, len(fixtures), violations)
	return b.String()
}

// cuts is the number of steps of s under a power cut.
func cuts(s []step) int {
	n := 0
	for _, x := range s {
		if x.cut.on {
			n++
		}
	}
	return n
}
