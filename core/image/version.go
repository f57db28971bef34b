package image

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Version is an image version as the MCUboot header stores it:
// major.minor.revision+build.
type Version struct {
	Major    uint8
	Minor    uint8
	Revision uint16
	Build    uint32
}

// String formats v as imgtool prints it, "1.2.3+4", with the build always
// present so that the text round-trips through ParseVersion.
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d+%d", v.Major, v.Minor, v.Revision, v.Build)
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
// The build number is compared last, as MCUboot does when built with
// MCUBOOT_VERSION_CMP_USE_BUILD_NUMBER; without that option MCUboot ignores
// it, so a downgrade check that must match such a bootloader compares
// v.Core() instead.
func (v Version) Compare(w Version) int {
	if c := cmp.Compare(v.Major, w.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(v.Minor, w.Minor); c != 0 {
		return c
	}
	if c := cmp.Compare(v.Revision, w.Revision); c != 0 {
		return c
	}
	return cmp.Compare(v.Build, w.Build)
}

// Core returns v without its build number.
func (v Version) Core() Version {
	v.Build = 0
	return v
}

// SameVersion tells whether two version strings name the same version: as
// MCUboot versions when both parse ("1.2" is "1.2.0+0"), as plain text
// otherwise, since the cloud platform's versions are free text ("app-1.1.0").
// The device agent and the fleet's campaigns both decide with it whether a
// device runs the version it was ordered, so the two sides never disagree.
func SameVersion(a, b string) bool {
	va, errA := ParseVersion(a)
	vb, errB := ParseVersion(b)
	if errA == nil && errB == nil {
		return va.Compare(vb) == 0
	}
	return a == b
}

// ParseVersion reads a version the way imgtool's --version does:
// "maj[.min[.rev[+build]]]", decimal, without leading zeros; missing parts
// are zero.
func ParseVersion(s string) (Version, error) {
	var v Version
	rest, build, hasBuild := strings.Cut(s, "+")
	parts := strings.Split(rest, ".")
	if len(parts) > 3 || (hasBuild && len(parts) != 3) {
		return v, fmt.Errorf("version %q: want major.minor.revision+build, e.g. 1.2.3+4 (the build needs all three parts before it)", s)
	}
	limits := []struct {
		name string
		bits int
	}{{"major", 8}, {"minor", 8}, {"revision", 16}}
	var vals [4]uint64
	for i, p := range parts {
		n, err := parseVersionPart(s, limits[i].name, p, limits[i].bits)
		if err != nil {
			return v, err
		}
		vals[i] = n
	}
	if hasBuild {
		n, err := parseVersionPart(s, "build", build, 32)
		if err != nil {
			return v, err
		}
		vals[3] = n
	}
	return Version{Major: uint8(vals[0]), Minor: uint8(vals[1]), Revision: uint16(vals[2]), Build: uint32(vals[3])}, nil
}

func parseVersionPart(s, name, p string, bits int) (uint64, error) {
	if p == "" {
		return 0, fmt.Errorf("version %q: empty %s; want major.minor.revision+build, e.g. 1.2.3+4", s, name)
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("version %q: %s %q is not a decimal number", s, name, p)
		}
	}
	if len(p) > 1 && p[0] == '0' {
		fixed := strings.TrimLeft(p, "0")
		if fixed == "" {
			fixed = "0"
		}
		return 0, fmt.Errorf("version %q: %s %q has a leading zero, which imgtool refuses; write %s", s, name, p, fixed)
	}
	n, err := strconv.ParseUint(p, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("version %q: %s %s is out of range (at most %d)", s, name, p, uint64(1)<<bits-1)
	}
	return n, nil
}
