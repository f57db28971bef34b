package portgen

import (
	"fmt"
	"strings"
	"testing"
)

// TestParse_RefusesHugeInputsEarly: issue 8's 50 MB board file of
// partitions took 22 s and 2.6 GB and reported "20 problems". A file past
// the limit, and lists past theirs, are refused with one problem that names
// the limit and the fix.
func TestParse_RefusesHugeInputsEarly(t *testing.T) {
	// singleBase with the partitions last, so that more can be appended.
	base := edit(t, singleBase, "image:\n  signature: ecdsa-p256\n", "")
	base = edit(t, base, "scheme: single-bank\n", "scheme: single-bank\nimage:\n  signature: ecdsa-p256\n")
	parts := func(n int) string {
		var b strings.Builder
		b.WriteString(base)
		for i := range n {
			fmt.Fprintf(&b, "  - {name: p%d, offset: 0x80000, size: 4KiB}\n", i)
		}
		return b.String()
	}
	runs := func(n int) string {
		return edit(t, singleBase, "    - {count: 4, size: 16KiB}\n", strings.Repeat("    - {count: 1, size: 4KiB}\n", n))
	}
	big := parts(1)
	big += strings.Repeat("# padding\n", (MaxFileSize-len(big))/10+1)
	tests := []struct {
		name  string
		src   string
		line  int
		field string
		msg   string
	}{
		{"file past 1MiB", big, 0, "", "the file is more than 1MiB, the limit for a board file"},
		{"too many partitions", parts(200), 17, "partitions", "lists 204 entries, more than the limit of 128"},
		{"too many sector runs", runs(300), 8, "flash.sectors", "lists 302 entries, more than the limit of 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("huge.yaml", []byte(tt.src))
			errs, ok := err.(Errors)
			if !ok || len(errs) != 1 {
				t.Fatalf("want one problem, got %d:\n%.2000v", len(errs), err)
			}
			p := errs[0]
			if p.File != "huge.yaml" || p.Line != tt.line || p.Field != tt.field || !strings.Contains(p.Msg, tt.msg) || !strings.Contains(p.Msg, "; ") {
				t.Errorf("problem %+v, want line %d, field %q, a message with %q and a fix", p, tt.line, tt.field, tt.msg)
			}
		})
	}
}
