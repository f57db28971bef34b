package all

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/ports/cport"
	"github.com/otaport/otaport/ports/portkit/porttest"
)

var update = flag.Bool("update", false, "write ports/cport's generated board files")

// The C port's host package compiles exactly the boards of the catalog:
// its zz_board_*.c files and table are what cport.BoardFiles makes of the
// catalog's names (go test ./ports/all -run TestCPort_BoardFiles -update
// writes them), and nothing else.
func TestCPort_BoardFiles(t *testing.T) {
	var names []string
	for _, e := range Catalog() {
		names = append(names, e.Name)
	}
	dir := filepath.Join(portsRoot, "cport")
	want := cport.BoardFiles(names)
	if *update {
		old, _ := filepath.Glob(filepath.Join(dir, "zz_*.c"))
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range want {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	have, err := filepath.Glob(filepath.Join(dir, "zz_*.c"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range have {
		if _, ok := want[filepath.Base(f)]; !ok {
			t.Errorf("ports/cport/%s is no board of the catalog; run go test ./ports/all -run TestCPort_BoardFiles -update", filepath.Base(f))
		}
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("ports/cport/%s is not what the catalog makes; run go test ./ports/all -run TestCPort_BoardFiles -update", name)
		}
	}
	if got := cport.Boards(); !slices.Equal(got, names) && !*update {
		t.Errorf("cport.Boards() = %v, want the catalog %v", got, names)
	}
}

// TestCPort_Conformance runs the conformance kit against the C port of
// every catalog board, in-process and over the plugin wire (gRPC), as
// TestConformance does against the Go ports.
func TestCPort_Conformance(t *testing.T) {
	for _, e := range Catalog() {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			l := e.Layout()
			porttest.ConformanceOf(t, e.Name, l, func(dev flash.Device) (porttest.Port, error) {
				return cport.New(l, dev, boot.Options{})
			})
		})
	}
}
