package image

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseDependencies(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"(1,1.2.3+0)", "[(1,1.2.3+0)]", ""},
		{"(1, 2.0.0), (2,0.3.1+9)", "[(1,2.0.0+0) (2,0.3.1+9)]", ""},
		{"(256,1.0.0)", "", "image index 256"},
		{"1,1.0.0", "", "want (IMAGE,VERSION)"},
		{"(1,x)", "", "want (IMAGE,VERSION)"},
		{"", "", "want (IMAGE,VERSION)"},
	}
	for _, tt := range tests {
		got, err := ParseDependencies(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseDependencies(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("ParseDependencies(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseDependencies(f *testing.F) {
	f.Add("(1,1.2.3+0),(2,2.0.0)")
	f.Add("((1,2)")
	f.Fuzz(func(t *testing.T, s string) {
		deps, err := ParseDependencies(s)
		if err != nil {
			return
		}
		// What parses prints as imgtool reads it, and parses again alike.
		var parts []string
		for _, d := range deps {
			parts = append(parts, d.String())
		}
		again, err := ParseDependencies(strings.Join(parts, ","))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(deps) {
			t.Fatalf("%q: %v does not round-trip: %v, %v", s, deps, again, err)
		}
	})
}
