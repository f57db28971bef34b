package powercut

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/ports/cport"
)

// The suite's size is chosen by OTAPORT_POWERCUT:
//
//	full      every operation of every flow, three modes, on every catalog
//	          board, plus multi-cut runs: the 50,000 interrupted boots
//	default   every operation on the default boards, fewer multi-cut runs
//	(unset)   a seeded sample on the default boards (-short or -race: a
//	          smaller one)
//
// OTAPORT_POWERCUT_CASE=board/flow/mode/k reruns one case of a report, and
// OTAPORT_POWERCUT_SEED changes the seed of the sample and the random cuts,
// and OTAPORT_POWERCUT_BOARDS=a,b picks the boards.
const (
	envSize   = "OTAPORT_POWERCUT"
	envCase   = "OTAPORT_POWERCUT_CASE"
	envSeed   = "OTAPORT_POWERCUT_SEED"
	envBoards = "OTAPORT_POWERCUT_BOARDS"
	envPort   = "OTAPORT_POWERCUT_PORT"
)

// suiteConfig returns the sweep the environment and -short ask for.
func suiteConfig(t *testing.T) Config {
	t.Helper()
	cfg := Config{Flows: Flows(), Seed: 1, Dir: t.TempDir(), Case: os.Getenv(envCase)}
	if cfg.Case != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if s := os.Getenv(envSeed); s != "" {
		if _, err := fmt.Sscan(s, &cfg.Seed); err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", envSeed, s)
		}
	}
	// rpi4-b's 64 MiB of 512-byte blocks makes every power-on walk a
	// table of 131,072 sectors (and read a 1 MiB params partition): a
	// run there costs twenty times a run on any other board, a hundred
	// under the race detector. It gets every single cut in the larger
	// sweeps, and fewer random runs or samples.
	const slow = "rpi4-b"
	names := DefaultBoards()
	switch size := os.Getenv(envSize); size {
	case "full":
		names = CatalogBoards()
		cfg.Multi = 400
		cfg.PerBoard = map[string]Sizes{slow: {Multi: 40}}
	case "default":
		cfg.Multi = 100
		cfg.PerBoard = map[string]Sizes{slow: {Multi: 20}}
	case "":
		cfg.Sample, cfg.Multi = 12, 6
		cfg.PerBoard = map[string]Sizes{slow: {Sample: 3, Multi: 1}}
		if testing.Short() || raceEnabled {
			cfg.Sample, cfg.Multi = 4, 2
			cfg.PerBoard = map[string]Sizes{slow: {Sample: 2}}
		}
	default:
		t.Fatalf("%s=%q: want full, default or nothing", envSize, size)
	}
	if s := os.Getenv(envBoards); s != "" {
		names = strings.Split(s, ",")
	}
	switch port := os.Getenv(envPort); port {
	case "c":
		cfg.CPort = true
		names = cportBoards(t, names)
	case "", "go":
	default:
		t.Fatalf("%s=%q: want go, c or nothing", envPort, port)
	}
	boards, err := Boards(names...)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Boards = boards
	return cfg
}

// TestPowerCut is the suite: for each flow of each board, cut the power
// before, after and in the middle of its flash operations (all of them, or
// a sample), power on, check, retry; and multi-cut runs. It fails on any
// failed assertion, and on a sweep that missed a mode or a scheme.
func TestPowerCut(t *testing.T) {
	cfg := suiteConfig(t)
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimRight(rep.Table(), "\n"), "\n") {
		t.Log(line)
	}
	for _, f := range rep.Failures {
		t.Errorf("%v\n\trerun: %s=%s go test -run TestPowerCut ./tests/powercut/", f, envCase, f.Case)
	}
	for c, n := range rep.Classes {
		t.Logf("%6d failures: %s", n, c)
	}
	if rep.Failed > len(rep.Failures) {
		t.Errorf("... and %d more failures", rep.Failed-len(rep.Failures))
	}
	if rep.Unbootable != 0 {
		t.Errorf("%d runs left a device that does not boot", rep.Unbootable)
	}
	if cfg.Case == "" {
		seen := map[string]int{}
		for _, row := range rep.Rows {
			seen[row.Scheme+"/"+row.Mode] += row.Cuts
			if row.Mode != "multi" && row.Runs == 0 {
				t.Errorf("%s/%s/%s: no run", row.Board, row.Flow, row.Mode)
			}
		}
		schemes := map[hal.Scheme]bool{}
		for _, b := range cfg.Boards {
			schemes[b.Layout.Scheme] = true
		}
		for _, s := range []hal.Scheme{hal.SingleBank, hal.DualBank, hal.Swap} {
			if !schemes[s] && (os.Getenv(envBoards) != "" || cfg.CPort) {
				continue // the boards picked have none
			}
			for _, m := range []string{"before", "after", "torn"} {
				if seen[string(s)+"/"+m] == 0 {
					t.Errorf("no %s cut on a %s board", m, s)
				}
			}
		}
	}
	t.Log(rep.Summary())
}

// TestDefaultBoards_CoverGeometries keeps the default choice of boards to
// what the issue asks: per scheme, non-uniform sectors, a write unit of 8
// bytes or more, and a flash that erases to 0x00.
func TestDefaultBoards_CoverGeometries(t *testing.T) {
	boards, err := Boards(DefaultBoards()...)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[hal.Scheme][]string{}
	for _, b := range boards {
		covered[b.Layout.Scheme] = append(covered[b.Layout.Scheme], Traits(b.Layout)...)
	}
	for _, s := range []hal.Scheme{hal.SingleBank, hal.DualBank} {
		for _, tr := range []string{TraitNonUniform, TraitWideWrite, TraitErasedZero} {
			if !slices.Contains(covered[s], tr) {
				t.Errorf("no %s board %s among %v", s, tr, DefaultBoards())
			}
		}
	}
	if _, err := Boards("no-such-board"); err == nil {
		t.Error("Boards accepted a board outside the catalog")
	}
}

func TestTraits(t *testing.T) {
	for _, tc := range []struct {
		board string
		want  []string
	}{
		{"stm32f407-disco", []string{TraitNonUniform}},
		{"frdm-k64f", []string{TraitWideWrite}},
		{"nucleo-l152re", []string{TraitErasedZero}},
		{"rpi4-b", []string{TraitWideWrite, TraitErasedZero}},
		{"longan-nano", nil},
	} {
		b, err := Boards(tc.board)
		if err != nil {
			t.Fatal(err)
		}
		if got := Traits(b[0].Layout); !slices.Equal(got, tc.want) {
			t.Errorf("Traits(%s) = %v, want %v", tc.board, got, tc.want)
		}
	}
}

func TestPoints(t *testing.T) {
	if got := points(5, 0, 1); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Errorf("points(5, all) = %v", got)
	}
	if got := points(5, 9, 1); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Errorf("points(5, 9) = %v", got)
	}
	got := points(300, 10, 7)
	if len(got) != 10 || got[0] != 1 || got[9] != 300 || !slices.IsSorted(got) {
		t.Errorf("points(300, 10) = %v: want 10 sorted points from 1 to 300", got)
	}
	if again := points(300, 10, 7); !slices.Equal(got, again) {
		t.Errorf("points is not a function of its seed: %v then %v", got, again)
	}
}

func TestParseCase(t *testing.T) {
	c, err := parseCase("nucleo-l152re/upgrade/torn/37")
	if err != nil || c != (caseName{"nucleo-l152re", "upgrade", "torn", 37}) {
		t.Errorf("parseCase = %+v, %v", c, err)
	}
	for _, bad := range []string{"", "a/b/c", "a/b/sideways/1", "a/b/torn/x", "a/b/torn/-1"} {
		if _, err := parseCase(bad); err == nil {
			t.Errorf("parseCase(%q) accepted", bad)
		}
	}
}

// TestPowerCut_DetectsBrick runs the sweep over a flow that rewrites app
// in place with no protection (erase, then program): a cut between the two
// leaves nothing to boot, and the suite must say so. It keeps the suite's
// own assertions honest.
func TestPowerCut_DetectsBrick(t *testing.T) {
	boards, err := Boards("stm32f407-disco")
	if err != nil {
		t.Fatal(err)
	}
	naive := Flow{Name: "naive-reflash", wantNew: false, run: func(ctx context.Context, f *fixture, dev *flash.Emulator) error {
		app, _ := f.layout.Partition(hal.PartApp)
		if err := dev.Erase(int64(app.Offset), 0x20000); err != nil {
			return err
		}
		if err := f.factory(dev); err != nil {
			return err
		}
		a, err := f.attach(dev)
		if err != nil {
			return err
		}
		if err := a.install(ctx); err != nil {
			return err
		}
		return a.rollback(ctx)
	}}
	rep, err := Run(context.Background(), Config{Boards: boards, Flows: []Flow{naive}, Dir: t.TempDir(), Sample: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	if rep.Unbootable == 0 || rep.Failed < rep.Unbootable {
		t.Fatalf("a flow that erases app and programs it again bricks on a cut between the two, but the suite found %d unbootable runs, %d failed:\n%s", rep.Unbootable, rep.Failed, rep.Table())
	}
	for _, f := range rep.Failures {
		if f.Stage == "power-on" && !strings.Contains(f.Err, "does not boot") {
			t.Errorf("failure %v does not say the device does not boot", f)
		}
	}
}

// cportBoards is names without the boards the C port is not compiled for
// (core/hal/haltest's boards outside the catalog), each named in the log.
func cportBoards(t *testing.T, names []string) []string {
	t.Helper()
	boards, err := Boards(names...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range boards {
		if !slices.Contains(cport.Boards(), b.Name) {
			t.Logf("%s: not a catalog board, the C port has no ota_board.h for it: left out", b.Name)
			continue
		}
		out = append(out, b.Name)
	}
	return out
}

// TestPowerCut_CPortSameFigures runs the quick sweep of the default boards
// on the Go port and on the C port (ports/cport), with the same seed: each
// cut falls on the same flash operation, so every figure of the report
// (operations per flow, runs, cuts, which image booted, failures) must be
// the same, and no run may leave a device that does not boot. A C port
// that wrote one operation more or less anywhere shifts a row. esp32-devkitc
// joins the default boards here: its boot requests are ESP-IDF's otadata,
// C code of their own; the catalog's swap-move board stands in for
// haltest's, which the C port is not compiled for.
func TestPowerCut_CPortSameFigures(t *testing.T) {
	if os.Getenv(envCase) != "" || os.Getenv(envPort) != "" {
		t.Skip("a single case, or a port chosen: TestPowerCut runs it")
	}
	cfg := Config{Flows: Flows(), Seed: 1, Sample: 3, Multi: 1, Dir: t.TempDir()}
	cfg.PerBoard = map[string]Sizes{"rpi4-b": {Sample: 2}}
	boards, err := Boards(cportBoards(t, append(DefaultBoards(), "esp32-devkitc", "nrf52840-dk"))...)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Boards = boards
	var reps [2]*Report
	for i, c := range []bool{false, true} {
		cfg.CPort = c
		if reps[i], err = Run(context.Background(), cfg); err != nil {
			t.Fatalf("C port %v: %v", c, err)
		}
	}
	goRep, cRep := reps[0], reps[1]
	for _, line := range strings.Split(strings.TrimRight(cRep.Table(), "\n"), "\n") {
		t.Log(line)
	}
	if len(goRep.Rows) != len(cRep.Rows) {
		t.Fatalf("the Go port's sweep has %d rows, the C port's %d", len(goRep.Rows), len(cRep.Rows))
	}
	for i := range goRep.Rows {
		if g, c := goRep.Rows[i], cRep.Rows[i]; !reflect.DeepEqual(g, c) {
			t.Errorf("Go port %+v\n\tC port %+v", g, c)
		}
	}
	for _, f := range cRep.Failures {
		t.Errorf("C port: %v", f)
	}
	if cRep.Unbootable != 0 || cRep.Failed != 0 {
		t.Errorf("C port: %d runs failed, %d left a device that does not boot", cRep.Failed, cRep.Unbootable)
	}
	t.Log("C port: " + cRep.Summary())
}
