package portgen

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
)

// TestHugeBoards_WorkBoundedBySectorRuns: boards of 2^51 and 2^31 sectors
// (issue 8: otagen hung on the first and took 5 s on the second) validate and
// generate with a number of sector-map steps bounded by runs x lookups, and
// the generated README counts their sectors right. Steps are counted, not
// timed.
func TestHugeBoards_WorkBoundedBySectorRuns(t *testing.T) {
	tests := []struct {
		file    string
		sectors map[string]uint64 // per partition, as the README lists them
	}{
		{"exa-2k.yaml", map[string]uint64{"bootloader": 32, "params": 2, "app": (1<<61 - 1<<20) / 2048, "ota": 1 << 50}},
		{"tib-512.yaml", map[string]uint64{"bootloader": 128, "params": 8, "app": 511 << 21, "ota": 511 << 21}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			boards, err := ParseFile(filepath.Join("testdata", "huge", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			b := boards[0]
			files, err := GeneratePort(b)
			if err != nil {
				t.Fatal(err)
			}
			// A lookup visits each run at most once; validation makes a
			// few per partition, generation one per partition.
			runs := len(b.Layout().Flash.Sectors)
			bound := 8 * runs * (len(b.Partitions) + 1)
			if steps := b.sectorMap().Steps; steps == 0 || steps > bound {
				t.Errorf("%d sector-map steps, want 1 to %d (%d runs, %d partitions)", steps, bound, runs, len(b.Partitions))
			}
			var readme []byte
			for _, f := range files {
				if f.Path == b.Name+"/README.md" {
					readme = f.Data
				}
			}
			for name, n := range tt.sectors {
				row := fmt.Sprintf("| %s |", name)
				i := bytes.Index(readme, []byte(row))
				if i < 0 {
					t.Fatalf("README has no row for %s:\n%s", name, readme)
				}
				line, _, _ := bytes.Cut(readme[i:], []byte("\n"))
				if !bytes.HasSuffix(line, []byte(fmt.Sprintf("| %d |", n))) {
					t.Errorf("README row %q, want %d sectors", line, n)
				}
			}
		})
	}
}
