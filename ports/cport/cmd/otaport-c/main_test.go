package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The plugin, built and named as make build names it, passes otarun's
// conformance run over the real process boundary (go-plugin, gRPC with
// mutual TLS, the shared-memory write path), and a name that is no board
// of the catalog is refused with the fix.
func TestPlugin_OtarunConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds otarun and the plugin")
	}
	dir := t.TempDir()
	plugin := filepath.Join(dir, "otaport-b-l475e-iot01a-c")
	otarun := filepath.Join(dir, "otarun")
	for _, b := range [][]string{{plugin, "."}, {otarun, "../../../../cmd/otarun"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	out, err := exec.Command(otarun, "--plugin", plugin, "conformance").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " passed, 0 failed") || strings.Contains(string(out), "FAIL") {
		t.Fatalf("otarun conformance: %v\n%s", err, out)
	}

	bad := filepath.Join(dir, "otaport-no-such-board-c")
	if out, err := exec.Command("cp", plugin, bad).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	out, err = exec.Command(bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `board "no-such-board" is not in the catalog`) {
		t.Fatalf("a plugin named for no board: %v\n%s", err, out)
	}
}
