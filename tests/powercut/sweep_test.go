package powercut

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/otaport/otaport/core/flash"
)

// Defaults of Config.
const (
	// DefaultPayloadSize keeps an upgrade at tens to hundreds of flash
	// operations: small images, as the issue asks, and the whole layout
	// of the board all the same.
	DefaultPayloadSize = 24 << 10
	// DefaultChunkSize is the engine's write size in the suite: its
	// smallest, so that the download is many operations a cut can fall
	// between.
	DefaultChunkSize = 4 << 10
	// DefaultCheckpointEvery is the engine's checkpoint interval in the
	// suite: a checkpoint every other chunk.
	DefaultCheckpointEvery = 8 << 10
	// MaxCuts is the most successive cuts of one multi-cut run.
	MaxCuts = 5
	// maxFailures is how many failures a report keeps in full.
	maxFailures = 40
)

// Modes are the cut modes of a sweep, in report order.
var modes = []flash.CutWhen{flash.Before, flash.After, flash.Torn}

// Config says what a sweep runs. The zero value plus Boards and Flows is
// the full sweep: every k of every mode of every flow of every board.
type Config struct {
	// Boards and Flows are crossed; a flow that needs a dual-bank board
	// skips single-bank ones.
	Boards []Board
	Flows  []Flow
	// Sample, when positive, cuts at Sample operations of each flow per
	// mode, drawn with Seed (always including the first and the last),
	// instead of at every one.
	Sample int
	// Multi is the number of runs of 2 to MaxCuts successive cuts at
	// random points per board and flow.
	Multi int
	// PerBoard overrides Sample and Multi for the boards it names: a
	// board whose runs cost much more than the others' gets fewer.
	PerBoard map[string]Sizes
	// Seed seeds the sample, the multi-cut runs and the torn points.
	Seed uint64
	// Workers is the number of goroutines that run cuts; 0 means
	// GOMAXPROCS.
	Workers int
	// PayloadSize is the payload of the two images; 0 means
	// DefaultPayloadSize.
	PayloadSize int
	// ChunkSize and CheckpointEvery tune the engine (0: the defaults
	// above).
	ChunkSize       int
	CheckpointEvery int64
	// Dir is where the image files go; "" makes a temporary directory
	// that Run removes.
	Dir string
	// Case, when set, runs one case only, as a Failure names it:
	// "board/flow/mode/k" with mode before, after or torn, or
	// "board/flow/multi/i".
	Case string
	// Logger, when set, receives the logs of the bootloader and the
	// engine of every run: for one Case, to see what happened.
	Logger *slog.Logger
	// CPort runs the engine over the C port of each board (ports/cport:
	// ports/c/ota_port.c with cgo, every flash call through the cut
	// injector) instead of core/boot's Go port. The bootloader is the
	// same simulated one.
	CPort bool
}

// Sizes are the Sample and Multi of one board (see Config).
type Sizes struct {
	Sample, Multi int
}

// sizes returns the Sample and Multi of board name.
func (c Config) sizes(name string) Sizes {
	if s, ok := c.PerBoard[name]; ok {
		return s
	}
	return Sizes{Sample: c.Sample, Multi: c.Multi}
}

func (c Config) payloadSize() int { return cmp0(c.PayloadSize, DefaultPayloadSize) }
func (c Config) chunkSize() int   { return cmp0(c.ChunkSize, DefaultChunkSize) }
func (c Config) checkpointEvery() int64 {
	if c.CheckpointEvery > 0 {
		return c.CheckpointEvery
	}
	return DefaultCheckpointEvery
}

func cmp0(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

// Row counts the runs of one board, flow and cut mode ("multi" for the
// multi-cut runs).
type Row struct {
	Board  string
	Scheme string
	Traits []string
	Flow   string
	Mode   string
	// Ops is N: the flash operations of a clean run of the flow.
	Ops int
	// Runs is the number of runs; Cuts the power cuts they made, each
	// followed by an interrupted boot.
	Runs int
	Cuts int
	// Old and New count the runs whose first power-on after the (last)
	// cut booted the old or the new image.
	Old, New int
	// Unbootable counts runs after which the bootloader found no image to
	// boot; Failed counts every run with a failed assertion (unbootable
	// ones included).
	Unbootable int
	Failed     int
}

// Failure is one run that broke an assertion.
type Failure struct {
	// Case names the run for Config.Case.
	Case string
	// Cuts are the cuts it made, in order.
	Cuts []flash.Cut
	// Stage is where it failed: flow (the scenario failed for another
	// reason than the cut), power-on (the device does not boot: a brick),
	// recover (the engine's recovery fails), check (it runs something
	// wrong or its state disagrees), retry (the upgrade does not complete).
	Stage string
	Err   string
}

func (f Failure) String() string {
	var cuts []string
	for _, c := range f.Cuts {
		cuts = append(cuts, fmt.Sprintf("%v@%d", c.When, c.At))
	}
	return fmt.Sprintf("%s [cuts %s]: %s: %s", f.Case, strings.Join(cuts, ","), f.Stage, f.Err)
}

// class is the kind of f: its stage and the start of its message with
// the numbers left out.
func (f Failure) class() string {
	var b strings.Builder
	b.WriteString(f.Stage + ": ")
	digits := false
	for _, r := range f.Err {
		if b.Len() >= 100 {
			break
		}
		if r >= '0' && r <= '9' || digits && (r >= 'a' && r <= 'f' || r == 'x') {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(r)
	}
	return b.String()
}

// Report is the outcome of a sweep.
type Report struct {
	Rows []Row
	// Failures holds the first failures in full; Failed counts them all.
	Failures []Failure
	Failed   int
	// Cuts is the total of interrupted boots; Unbootable the runs that
	// ended with a device that does not boot.
	Cuts       int
	Unbootable int
	Workers    int
	// Classes counts the failures by kind: the stage and the start of the
	// message, numbers left out, so that one bug hit a thousand times
	// reads as one line.
	Classes map[string]int
}

// Summary is the one line a test prints last.
func (r *Report) Summary() string {
	return fmt.Sprintf("power-cut suite: %d interrupted boots in %d runs over %d board/flow/mode rows, %d workers: %d unbootable, %d failed",
		r.Cuts, r.runs(), len(r.Rows), r.Workers, r.Unbootable, r.Failed)
}

func (r *Report) runs() int {
	n := 0
	for _, row := range r.Rows {
		n += row.Runs
	}
	return n
}

// Table formats the rows, one a line, for the log and docs/power-cut.md.
func (r *Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %-11s %-8s %-6s %5s %6s %6s %6s %6s %6s %6s\n", "board", "scheme", "flow", "mode", "N", "runs", "cuts", "old", "new", "brick", "failed")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "%-18s %-11s %-8s %-6s %5d %6d %6d %6d %6d %6d %6d\n", row.Board, row.Scheme, row.Flow, row.Mode, row.Ops, row.Runs, row.Cuts, row.Old, row.New, row.Unbootable, row.Failed)
	}
	return b.String()
}

// job is one run: a single cut (when, at) or a multi-cut run (multi >= 0).
type job struct {
	f     *fixture
	flow  Flow
	row   int
	n     int // N of the flow
	when  flash.CutWhen
	at    int
	multi int // index of a multi-cut run, -1 for a single cut
	seed  uint64
}

func (j job) name() string {
	if j.multi >= 0 {
		return fmt.Sprintf("%s/%s/multi/%d", j.f.board.Name, j.flow.Name, j.multi)
	}
	return fmt.Sprintf("%s/%s/%v/%d", j.f.board.Name, j.flow.Name, j.when, j.at)
}

// outcome is what one run reports.
type outcome struct {
	row        int
	cuts       []flash.Cut
	booted     bool // the power-on after the last cut booted an image
	ranNew     bool
	unbootable bool
	fail       *Failure
}

// Run runs the sweep cfg describes and reports every count and failure.
// It returns an error only when the sweep cannot run (a board that cannot
// be prepared, a clean run that fails): failures of cut runs are in the
// report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "powercut-")
		if err != nil {
			return nil, fmt.Errorf("power-cut suite: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var only *caseName
	if cfg.Case != "" {
		c, err := parseCase(cfg.Case)
		if err != nil {
			return nil, err
		}
		only = &c
	}
	rep := &Report{Workers: cfg.Workers}
	if rep.Workers <= 0 {
		rep.Workers = runtime.GOMAXPROCS(0)
	}

	var jobs []job
	for _, b := range cfg.Boards {
		if only != nil && only.board != b.Name {
			continue
		}
		// One fixture per kind of image the board's flows install.
		fixtures := map[Kind]*fixture{}
		for _, fl := range cfg.Flows {
			if !fl.applies(b.Layout) || (only != nil && only.flow != fl.Name) {
				continue
			}
			f := fixtures[fl.Kind]
			if f == nil {
				var err error
				if f, err = newFixture(ctx, b, cfg, dir, fl.Kind); err != nil {
					return nil, fmt.Errorf("power-cut suite: %w", err)
				}
				fixtures[fl.Kind] = f
			}
			n, err := f.cleanRun(ctx, fl)
			if err != nil {
				return nil, fmt.Errorf("power-cut suite: board %s, flow %s, without a cut: %w", b.Name, fl.Name, err)
			}
			for _, m := range append(slices.Clone(modes), multiMode) {
				row := Row{Board: b.Name, Scheme: string(b.Layout.Scheme), Traits: Traits(b.Layout), Flow: fl.Name, Mode: modeName(m), Ops: n}
				rep.Rows = append(rep.Rows, row)
				ri := len(rep.Rows) - 1
				seed := cfg.Seed ^ hashString(b.Name+"/"+fl.Name+"/"+row.Mode)
				if m == multiMode {
					for i := range cfg.sizes(b.Name).Multi {
						if only != nil && (only.mode != row.Mode || only.k != i) {
							continue
						}
						jobs = append(jobs, job{f: f, flow: fl, row: ri, n: n, multi: i, seed: seed + uint64(i)})
					}
					continue
				}
				for _, k := range points(n, cfg.sizes(b.Name).Sample, seed) {
					if only != nil && (only.mode != row.Mode || only.k != k) {
						continue
					}
					jobs = append(jobs, job{f: f, flow: fl, row: ri, n: n, when: m, at: k, multi: -1, seed: cfg.Seed + uint64(k)})
				}
			}
		}
	}
	if only != nil && len(jobs) == 0 {
		return nil, fmt.Errorf("power-cut suite: case %q matches no run (is k within 1..N of the flow?)", cfg.Case)
	}

	in := make(chan job)
	out := make(chan outcome)
	var wg sync.WaitGroup
	for range rep.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range in {
				out <- j.run(ctx)
			}
		}()
	}
	go func() {
		defer close(in)
		for _, j := range jobs {
			select {
			case in <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(out)
	}()
	for o := range out {
		row := &rep.Rows[o.row]
		row.Runs++
		row.Cuts += len(o.cuts)
		rep.Cuts += len(o.cuts)
		if o.booted {
			if o.ranNew {
				row.New++
			} else {
				row.Old++
			}
		}
		if o.unbootable {
			row.Unbootable++
			rep.Unbootable++
		}
		if o.fail != nil {
			row.Failed++
			rep.Failed++
			if rep.Classes == nil {
				rep.Classes = map[string]int{}
			}
			rep.Classes[o.fail.class()]++
			if len(rep.Failures) < maxFailures {
				rep.Failures = append(rep.Failures, *o.fail)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("power-cut suite: %w", err)
	}
	sort.Slice(rep.Failures, func(a, b int) bool { return rep.Failures[a].Case < rep.Failures[b].Case })
	return rep, nil
}

// multiMode stands for the multi-cut runs among the cut modes.
const multiMode = flash.CutWhen(-1)

func modeName(m flash.CutWhen) string {
	if m == multiMode {
		return "multi"
	}
	return m.String()
}

// points returns the operations to cut at: all of 1..n, or a seeded sample
// of them that always holds the first and the last.
func points(n, sample int, seed uint64) []int {
	if sample <= 0 || sample >= n {
		ks := make([]int, n)
		for i := range ks {
			ks[i] = i + 1
		}
		return ks
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	set := map[int]bool{1: true, n: true}
	for len(set) < sample {
		set[1+r.IntN(n)] = true
	}
	ks := make([]int, 0, len(set))
	for k := range set {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// caseName is a parsed Config.Case.
type caseName struct {
	board, flow, mode string
	k                 int
}

func parseCase(s string) (caseName, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 4 {
		return caseName{}, fmt.Errorf("power-cut case %q: want board/flow/mode/k, e.g. nucleo-l152re/upgrade/torn/37", s)
	}
	k, err := strconv.Atoi(parts[3])
	if err != nil || k < 0 {
		return caseName{}, fmt.Errorf("power-cut case %q: %q is not an operation number", s, parts[3])
	}
	switch parts[2] {
	case "before", "after", "torn", "multi":
	default:
		return caseName{}, fmt.Errorf("power-cut case %q: mode %q: want before, after, torn or multi", s, parts[2])
	}
	return caseName{board: parts[0], flow: parts[1], mode: parts[2], k: k}, nil
}

// cleanRun runs fl without a cut on a clone of the base flash, checks that
// it ends as the flow says and that the upgrade can then be completed, and
// returns N, its number of flash operations.
func (f *fixture) cleanRun(ctx context.Context, fl Flow) (int, error) {
	dev := f.base.Clone()
	if err := fl.run(ctx, f, dev); err != nil {
		return 0, err
	}
	n := dev.Ops()
	o, err := f.powerOn(ctx, dev.Clone())
	if err != nil {
		return 0, fmt.Errorf("power-on after the flow: %w", err)
	}
	want, wantSt := f.oldVer, stateRolledBack
	if fl.wantNew {
		want, wantSt = f.newVer, stateConfirmed
	}
	if o.res.Version != want || o.st != wantSt {
		return 0, fmt.Errorf("the flow ends with %s running and the engine %s; want %s and %s", o.res.Version, o.st, want, wantSt)
	}
	if n == 0 {
		return 0, fmt.Errorf("the flow made no flash operation")
	}
	end := dev.Clone()
	o, err = f.powerOn(ctx, end)
	if err != nil {
		return 0, err
	}
	if err := f.finish(ctx, end, o); err != nil {
		return 0, fmt.Errorf("after the flow: %w", err)
	}
	return n, nil
}

// run runs one job and reports its outcome. It never panics on a failed
// assertion: every failure is an outcome.
func (j job) run(ctx context.Context) (o outcome) {
	o.row = j.row
	fail := func(stage string, err error) outcome {
		o.fail = &Failure{Case: j.name(), Cuts: o.cuts, Stage: stage, Err: err.Error()}
		return o
	}
	f := j.f
	dev := f.base.Clone()
	var r *rand.Rand
	cut := flash.Cut{At: j.at, When: j.when, Seed: j.seed}
	if j.multi >= 0 {
		r = rand.New(rand.NewPCG(j.seed, 0x3c07))
		cut = flash.Cut{At: 1 + r.IntN(j.n), When: modes[r.IntN(len(modes))], Seed: r.Uint64()}
	}
	dev.SetCut(cut)
	err := j.flow.run(ctx, f, dev)
	if !dev.PoweredOff() {
		return fail("flow", fmt.Errorf("the cut at operation %d of %d never happened (flow returned %v)", cut.At, j.n, err))
	}
	o.cuts = append(o.cuts, cut)

	// More cuts, each in what the device does next: power-on, recovery,
	// the retried upgrade.
	extra := 0
	if j.multi >= 0 {
		extra = 1 + r.IntN(MaxCuts-1)
	}
	for range extra {
		dev = dev.Clone()
		probe := dev.Clone()
		if err := f.resumeAll(ctx, probe); err != nil {
			return f.classify(fail, "retry", err)
		}
		rest := probe.Ops()
		if rest == 0 {
			break
		}
		cut = flash.Cut{At: 1 + r.IntN(rest), When: modes[r.IntN(len(modes))], Seed: r.Uint64()}
		dev.SetCut(cut)
		err := f.resumeAll(ctx, dev)
		if !dev.PoweredOff() {
			return fail("retry", fmt.Errorf("a cut at operation %d of the %d of the retry never happened (retry returned %v)", cut.At, rest, err))
		}
		o.cuts = append(o.cuts, cut)
	}

	dev = dev.Clone()
	p, err := f.powerOn(ctx, dev)
	if err != nil {
		return f.classify(fail, "recover", err)
	}
	o.booted, o.ranNew = true, p.res.Version == f.newVer
	if err := f.check(ctx, dev, p); err != nil {
		return fail("check", err)
	}
	if err := f.finish(ctx, dev, p); err != nil {
		return fail("retry", err)
	}
	return o
}

// resumeAll is what the device does after a power cut: power on, and
// retry the upgrade to its end.
func (f *fixture) resumeAll(ctx context.Context, dev *flash.Emulator) error {
	p, err := f.powerOn(ctx, dev)
	if err != nil {
		return err
	}
	if err := f.check(ctx, dev, p); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	return f.finish(ctx, dev, p)
}

// classify turns an error into a failure at stage, or at power-on and
// unbootable when the bootloader found nothing to boot.
func (f *fixture) classify(fail func(string, error) outcome, stage string, err error) outcome {
	if be := (*brickError)(nil); errors.As(err, &be) {
		o := fail("power-on", err)
		o.unbootable = true
		return o
	}
	return fail(stage, err)
}
