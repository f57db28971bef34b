package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otaport/otaport/cmd/internal/cli/clitest"
)

// The boards the end-to-end scripts run on: dual-bank with one boot
// attempt, dual-bank with three, single-bank (and the swap board, built
// from testdata).
var scriptBoards = []string{"esp32-devkitc", "b-l475e-iot01a", "longan-nano"}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildBinaries builds otarun, otaimg and the port plugins of scriptBoards
// into one directory, once per test binary.
func buildBinaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "otarun-e2e-")
		if buildErr != nil {
			return
		}
		pkgs := []string{"../otarun", "../otaimg"}
		for _, b := range scriptBoards {
			pkgs = append(pkgs, "../../ports/"+b+"/cmd/otaport-"+b)
		}
		// The swap board's plugin, from testdata: no catalog board
		// uses MCUboot swap-move yet.
		pkgs = append(pkgs, "./testdata/otaport-nrf52840-dk-swap")
		cmd := exec.Command("go", append([]string{"build", "-o", binDir + "/"}, pkgs...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestEngineScripts runs the built otarun against built port plugins, one
// process per command as a user does, from testdata/script/*.txtar: install,
// boot, status --json, confirm, and a trial image that is not confirmed and
// reverts, on dual- and single-bank boards.
func TestEngineScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds otarun and port plugins")
	}
	bin := buildBinaries(t)
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", bin+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("BIN", bin)
			env.Setenv("OTAPORT_FLASH", filepath.Join(env.WorkDir, "device.flash"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": clitest.Exits,
			// serve DIR: serve DIR over HTTP on loopback; $URL is its root.
			"serve": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: serve DIR")
				}
				srv := httptest.NewServer(http.FileServer(http.Dir(ts.MkAbs(args[0]))))
				ts.Defer(srv.Close)
				ts.Setenv("URL", srv.URL)
			},
			// mkfile NAME N [SEED]: a file of N pseudo-random bytes (an
			// image larger than one write of the engine); files of one
			// seed (1 unless given) share their first bytes.
			"mkfile": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 || len(args) > 3 {
					ts.Fatalf("usage: mkfile NAME N [SEED]")
				}
				n, err := strconv.Atoi(args[1])
				ts.Check(err)
				seed := 1
				if len(args) == 3 {
					seed, err = strconv.Atoi(args[2])
					ts.Check(err)
				}
				b := make([]byte, n)
				_, _ = rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
			},
			// serve-cut DIR N: serve DIR over HTTP on loopback, each
			// response cut after N bytes of its body (Range is
			// honoured); $CUTURL is its root.
			"serve-cut": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: serve-cut DIR N")
				}
				n, err := strconv.Atoi(args[1])
				ts.Check(err)
				files := http.FileServer(http.Dir(ts.MkAbs(args[0])))
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					files.ServeHTTP(&cutWriter{ResponseWriter: w, left: n}, r)
				}))
				ts.Defer(srv.Close)
				ts.Setenv("CUTURL", srv.URL)
			},
			// status FIELD VALUE: the JSON object of the last
			// `otarun status --json` has FIELD (a string or bool) = VALUE.
			"status": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: status FIELD VALUE")
				}
				var st map[string]any
				ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &st))
				got := fmt.Sprint(st[args[0]])
				if (got == args[1]) == neg {
					ts.Fatalf("status %s = %q, want %s%q", args[0], got, map[bool]string{true: "not ", false: ""}[neg], args[1])
				}
			},
			// module NAME FIELD VALUE: the object of module NAME in the
			// last `otarun status --config F --json` of every module has
			// FIELD = VALUE.
			"module": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 3 {
					ts.Fatalf("usage: module NAME FIELD VALUE")
				}
				var all map[string]map[string]any
				ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &all))
				st, ok := all[args[0]]
				if !ok {
					ts.Fatalf("no module %s in status", args[0])
				}
				if got := fmt.Sprint(st[args[1]]); got != args[2] {
					ts.Fatalf("module %s: %s = %q, want %q", args[0], args[1], got, args[2])
				}
			},
			// slot NAME VERSION BOOTABLE: the last status --json lists slot
			// NAME with that version and bootable flag.
			"slot": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 3 {
					ts.Fatalf("usage: slot NAME VERSION BOOTABLE")
				}
				var st struct {
					Slots []struct {
						Name     string `json:"name"`
						Version  string `json:"version"`
						Bootable bool   `json:"bootable"`
					} `json:"slots"`
				}
				ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &st))
				want, err := strconv.ParseBool(args[2])
				ts.Check(err)
				var seen []string
				for _, s := range st.Slots {
					if s.Name == args[0] {
						if s.Version != args[1] || s.Bootable != want {
							ts.Fatalf("slot %s: version %q bootable %v, want %q %v", s.Name, s.Version, s.Bootable, args[1], want)
						}
						return
					}
					seen = append(seen, s.Name)
				}
				ts.Fatalf("no slot %s in status (slots %s)", args[0], strings.Join(seen, ", "))
			},
		},
	})
}

// cutWriter passes on at most left bytes of a body, then fails the
// connection, as a network that drops in the middle of a download.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (w *cutWriter) Write(b []byte) (int, error) {
	if len(b) > w.left {
		_, _ = w.ResponseWriter.Write(b[:w.left])
		w.left = 0
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler) // ends the connection short of the Content-Length
	}
	w.left -= len(b)
	return w.ResponseWriter.Write(b)
}
