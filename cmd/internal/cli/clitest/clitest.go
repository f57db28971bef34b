// Package clitest is test support for the command lines: a testscript
// command that checks the exit statuses package cli promises, and the check
// that docs/cli.md is what the commands say of themselves.
package clitest

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
)

// Exits is the testscript command
//
//	exits N PROG [ARGS...]
//
// which runs PROG as exec does and fails unless it exits with status N (0
// done, 1 failed, 2 a wrong command line); stdout and stderr are kept for
// the commands that follow.
func Exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: %q is not an exit status", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// updateReference is the test flag that rewrites docs/cli.md.
var updateReference = flag.Bool("update-reference", false, "rewrite the tool's reference in docs/cli.md")

// CheckReference fails t unless docs/cli.md holds the reference of root as
// cli.Reference writes it; with -update-reference it rewrites that part of
// the file instead. The test runs in cmd/<tool>.
func CheckReference(t *testing.T, root *cobra.Command) {
	t.Helper()
	file := filepath.Join("..", "..", "docs", "cli.md")
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want, err := cli.UpdateReference(doc, root)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if bytes.Equal(doc, want) {
		return
	}
	if *updateReference {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: the reference of %s differs from its commands: run go test ./cmd/%s -run TestReference -update-reference", file, root.Name(), root.Name())
}
