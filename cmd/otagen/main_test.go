package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otaport/otaport/cmd/internal/cli/clitest"
	"github.com/otaport/otaport/portgen"
)

// TestMain lets the test binary run as otagen inside the scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"otagen": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
		// otagen-bigfile FILE writes a board file just past the size limit.
		"otagen-bigfile": func() {
			data := bytes.Repeat([]byte("# padding\n"), portgen.MaxFileSize/10+1)
			if err := os.WriteFile(os.Args[1], data, 0o644); err != nil {
				os.Exit(1)
			}
			os.Exit(0)
		},
	})
}

// TestScripts runs otagen as a user does: testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script", Cmds: map[string]func(*testscript.TestScript, bool, []string){"exits": clitest.Exits}})
}

// TestReference keeps the otagen section of docs/cli.md equal to the commands.
func TestReference(t *testing.T) { clitest.CheckReference(t, newRoot()) }
