package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otaport/otaport/cmd/internal/cli/clitest"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/script/*.txtar")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"otaimg": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// imageTestdata holds the fixed keys and the imgtool-made images of
// core/image, which the scripts use.
var imageTestdata = filepath.Join("..", "..", "core", "image", "testdata")

// TestScripts runs otaimg as a user does, one process per command, from
// the scripts in testdata/script. Each script starts with keys/ (the
// fixed test keys) and imgtool/ (images MCUboot's imgtool signed with them).
func TestScripts(t *testing.T) {
	abs, err := filepath.Abs(imageTestdata)
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:           filepath.Join("testdata", "script"),
		UpdateScripts: *update,
		Setup: func(env *testscript.Env) error {
			for _, dir := range []string{"keys", "imgtool"} {
				if err := copyDir(filepath.Join(abs, dir), filepath.Join(env.WorkDir, dir)); err != nil {
					return err
				}
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": clitest.Exits,
			// flip FILE OFFSET: invert the low bit of one byte (tampering).
			"flip": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: flip FILE OFFSET")
				}
				off, err := strconv.ParseInt(args[1], 0, 64)
				ts.Check(err)
				path := ts.MkAbs(args[0])
				b, err := os.ReadFile(path)
				ts.Check(err)
				if off < 0 || off >= int64(len(b)) {
					ts.Fatalf("offset %d outside %s (%d bytes)", off, args[0], len(b))
				}
				b[off] ^= 1
				ts.Check(os.WriteFile(path, b, 0o644))
			},
		},
	})
}

func copyDir(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			return fmt.Errorf("copy %s: %w", e.Name(), err)
		}
	}
	return nil
}

func TestRun_ExitCodes(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"help"}, 0},
		{[]string{"nosuch"}, 2},
		{[]string{"sign", "--version", "1.0.0"}, 2},
		{[]string{"sign", "--bogus"}, 2},
		{[]string{"verify", filepath.Join(dir, "missing.img")}, 1},
		{[]string{"keygen", "--type", "ed25519", "-o", filepath.Join(dir, "k.pem")}, 0},
		{[]string{"keygen", "--type", "ed25519", "-o", filepath.Join(dir, "k.pem")}, 1},
		{[]string{"info", "-h"}, 0},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		if got := run(tc.args, &out, &out); got != tc.want {
			t.Errorf("otaimg %v: exit %d, want %d\n%s", tc.args, got, tc.want, out.String())
		}
	}
}

// TestReference keeps the otaimg section of docs/cli.md equal to the commands.
func TestReference(t *testing.T) { clitest.CheckReference(t, newRoot()) }
