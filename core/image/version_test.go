package image

import (
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want Version
		err  string
	}{
		{"1.2.3+4", Version{1, 2, 3, 4}, ""},
		{"1.2.3", Version{1, 2, 3, 0}, ""},
		{"1.2", Version{1, 2, 0, 0}, ""},
		{"7", Version{7, 0, 0, 0}, ""},
		{"0.0.0+0", Version{}, ""},
		{"255.255.65535+4294967295", Version{255, 255, 65535, 4294967295}, ""},
		{"256.0.0", Version{}, "major 256 is out of range"},
		{"1.256", Version{}, "minor 256 is out of range"},
		{"1.2.65536", Version{}, "revision 65536 is out of range"},
		{"1.2.3+4294967296", Version{}, "build 4294967296 is out of range"},
		{"1.2+3", Version{}, "the build needs all three parts"},
		{"1.2.3.4", Version{}, "want major.minor.revision+build"},
		{"01.2.3", Version{}, "leading zero"},
		{"1.00", Version{}, "write 0"},
		{"", Version{}, "empty major"},
		{"1..3", Version{}, "empty minor"},
		{"1.2.3+", Version{}, "empty build"},
		{"v1.2.3", Version{}, "not a decimal number"},
		{"1.-2", Version{}, "not a decimal number"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseVersion(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseVersion(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseVersion(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestVersion_StringRoundTrips(t *testing.T) {
	v := Version{1, 2, 3, 4}
	if s := v.String(); s != "1.2.3+4" {
		t.Fatalf("String = %q", s)
	}
	got, err := ParseVersion(v.String())
	if err != nil || got != v {
		t.Fatalf("round trip: %v, %v", got, err)
	}
}

func TestVersion_Compare(t *testing.T) {
	order := []string{"0.0.0", "0.0.0+1", "0.0.1", "0.0.255", "0.0.256", "0.1.0", "0.255.0", "1.0.0", "1.0.0+9", "1.2.3", "2.0.0"}
	for i, a := range order {
		for j, b := range order {
			va, _ := ParseVersion(a)
			vb, _ := ParseVersion(b)
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := va.Compare(vb); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", a, b, got, want)
			}
		}
	}
	if (Version{1, 0, 0, 5}).Core().Compare(Version{1, 0, 0, 2}.Core()) != 0 {
		t.Error("Core should drop the build")
	}
}

func TestSameVersion(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1.2.3+4", "1.2.3+4", true},
		{"1.2", "1.2.0+0", true},
		{"1", "1.0.0", true},
		{"1.2.3", "1.2.3+1", false}, // the build counts, as in Compare
		{"1.2.3", "1.2.4", false},
		{"app-1.1.0", "app-1.1.0", true}, // free text: equal as text
		{"app-1.1.0", "1.1.0", false},
		{"01.2", "01.2", true}, // does not parse: compared as text
		{"01.2", "1.2", false},
		{"", "", true},
		{"", "0", false},
	} {
		if got := SameVersion(tc.a, tc.b); got != tc.want {
			t.Errorf("SameVersion(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := SameVersion(tc.b, tc.a); got != tc.want {
			t.Errorf("SameVersion(%q, %q) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.3+4", "1.2", "0", "255.255.65535+4294967295", "01.2", "1.2.3+", "+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		back, err := ParseVersion(v.String())
		if err != nil || back != v {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, v, v.String(), back, err)
		}
	})
}
