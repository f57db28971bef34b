package portgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParseBoard: any input gives boards or an error, never both, never a
// panic; what parses validates again after a round trip through YAML, and
// every problem names the file.
func FuzzParseBoard(f *testing.F) {
	f.Add([]byte(singleBase))
	f.Add([]byte(dualBase))
	f.Add([]byte(dualLayoutMismatch))
	f.Add([]byte(catalogOf(singleBase, dualBase)))
	if data, err := os.ReadFile(filepath.Join("..", "boards.yaml")); err == nil {
		f.Add(data)
	}
	if files, _ := filepath.Glob(filepath.Join("testdata", "errors", "*.yaml")); len(files) > 0 {
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		boards, err := Parse("f.yaml", data)
		if err != nil {
			if boards != nil {
				t.Fatalf("boards and an error: %v", err)
			}
			errs, ok := err.(Errors)
			if !ok || len(errs) == 0 {
				t.Fatalf("error %T %v, want a non-empty Errors", err, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml") {
					t.Fatalf("problem %q does not name the file", line)
				}
			}
			return
		}
		if len(boards) == 0 {
			t.Fatal("no boards and no error")
		}
		for _, b := range boards {
			if err := b.Validate(); err != nil {
				t.Fatalf("parsed board fails Validate: %v", err)
			}
			l := b.Layout()
			var total uint64
			for _, s := range l.Flash.Sectors {
				total += uint64(s.Count) * s.Size
			}
			if total != l.Flash.Size {
				t.Fatalf("layout sectors add up to %d, flash is %d", total, l.Flash.Size)
			}
			out, err := yaml.Marshal(b)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			again, err := Parse("again.yaml", out)
			if err != nil {
				t.Fatalf("board does not parse after a YAML round trip: %v\n%s", err, out)
			}
			if again[0].Name != b.Name || len(again[0].Partitions) != len(b.Partitions) || again[0].Flash.Size != b.Flash.Size {
				t.Fatalf("round trip changed the board: %+v -> %+v", b, again[0])
			}
		}
	})
}
