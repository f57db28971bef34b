package portgen

import (
	goparser "go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzGeneratePort: every board that Parse accepts must generate, and the
// generated Go must parse. Parse decides validity; the generator must not
// fail or panic on anything it lets through.
func FuzzGeneratePort(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join(goldenDir, "boards.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		boards, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, b := range boards {
			if reserved(b.Name) || b.OutOfTree() {
				continue // refused by the generator on purpose
			}
			files, err := GeneratePort(b)
			if err != nil {
				t.Fatalf("valid board %s does not generate: %v", b.Name, err)
			}
			for _, file := range files {
				if !strings.HasSuffix(file.Path, ".go") {
					continue
				}
				if _, err := goparser.ParseFile(token.NewFileSet(), file.Path, file.Data, 0); err != nil {
					t.Fatalf("%s does not parse: %v", file.Path, err)
				}
			}
		}
	})
}
