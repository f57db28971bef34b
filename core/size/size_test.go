package size

import (
	"regexp"
	"strings"
	"testing"
)

func TestParse_Accepts(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
	}{
		{"0", 0},
		{"4096", 4096},
		{"0x1000", 0x1000},
		{"0X1000", 0x1000},
		{"0xfF", 255},
		{"0x08000000", 0x08000000},
		{"4KiB", 4096},
		{"4 KiB", 4096},
		{" 16KiB ", 16384},
		{"1MiB", 1 << 20},
		{"2GiB", 2 << 30},
		{"1TiB", 1 << 40},
		{"0.5TiB", 1 << 39},
		{"1.5MiB", 1572864},
		{"0.5KiB", 512},
		{"1.25KiB", 1280},
		{"1.50MiB", 1572864},
		{"0x7fffffffffffffff", Max},
		{"9223372036854775807", Max},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q) error %v, want %d", tt.in, err, tt.want)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParse_Refuses(t *testing.T) {
	tests := []struct {
		in, msg string
	}{
		{"", "empty size"},
		{"-4096", "negative size"},
		{"-4KiB", "negative size"},
		{"+4096", "has a sign"},
		{"0x", "no hex digits"},
		{"0x1G", "not a hex number"},
		{"0x10KiB", "not a hex number"},
		{"0x8000000000000000", "too large"},
		{"9223372036854775808", "too large"},
		{"99999999999999999999999", "too large"},
		{"8589934592GiB", "too large"},
		{"4KB", "write KiB"},
		{"4kB", "write KiB"},
		{"4K", "write KiB"},
		{"1MB", "write MiB"},
		{"1M", "write MiB"},
		{"1GB", "GiB"},
		{"1TB", "write TiB"},
		{"1tib", "that case exactly"},
		{"8388608TiB", "too large"},
		{"4kib", "that case exactly"},
		{"1.5", "not a whole number of bytes"},
		{"0.3KiB", "not a whole number of bytes"},
		{"1.0000000000000000000001KiB", "not a whole number of bytes"},
		{"010", "leading zero"},
		{"1_000", "not a byte count"},
		{"1e3", "not a byte count"},
		{"lots", "not a byte count"},
		{"KiB", "not a number"},
		{"1.KiB", "not a number"},
		{".5KiB", "not a number"},
		{"1..5KiB", "not a number"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %d, want an error containing %q", tt.in, got, tt.msg)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Parse(%q) error %q, want it to contain %q", tt.in, err, tt.msg)
		}
	}
}

// The schema's size pattern must accept exactly the strings Parse
// accepts, except for fractions that are not a whole number of bytes, which
// only the parser can see.
func TestSizePattern_AgreesWithParse(t *testing.T) {
	re := regexp.MustCompile(Pattern)
	inputs := []string{
		"0", "4096", "0x1000", "0XAB", "4KiB", "4 KiB", "1.5MiB", "2GiB", "1TiB", " 7 ",
		"", "-1", "+1", "0x", "4KB", "1TB", "4K", "4kib", "1.5", "010", "1_000", "1e3", "lots", "KiB", ".5KiB", "1.KiB",
	}
	for _, in := range inputs {
		_, err := Parse(in)
		if got, want := re.MatchString(in), err == nil; got != want {
			t.Errorf("%q: pattern match %v, Parse accepts %v", in, got, want)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in   uint64
		want string
	}{
		{0, "0"}, {1, "1"}, {1000, "1000"}, {1024, "1KiB"}, {0x1800, "6KiB"}, {1 << 20, "1MiB"},
		{3 << 29, "1536MiB"}, {1 << 30, "1GiB"}, {0x1001, "0x1001"}, {1 << 40, "1TiB"}, {3 << 39, "1536GiB"},
	}
	for _, tt := range tests {
		if got := Format(tt.in); got != tt.want {
			t.Errorf("Format(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
