package image

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Dependency is MCUboot's image dependency (struct image_dependency): the
// image of index ImageID must run MinVersion or a later one. imgtool writes
// it with -d "(1,1.2.3+0)"; MCUboot's multi-image builds check it before
// they swap. On a device of several modules it is what keeps the modules
// of one release together.
type Dependency struct {
	ImageID    uint8
	MinVersion Version
}

// dependencySize is the DEPENDENCY TLV's value: image_id, 3 bytes of
// padding, then struct image_version as in the header.
const dependencySize = 12

func (d Dependency) String() string { return fmt.Sprintf("(%d,%s)", d.ImageID, d.MinVersion) }

func (d Dependency) bytes() []byte {
	b := make([]byte, dependencySize)
	b[0] = d.ImageID
	b[4], b[5] = d.MinVersion.Major, d.MinVersion.Minor
	binary.LittleEndian.PutUint16(b[6:], d.MinVersion.Revision)
	binary.LittleEndian.PutUint32(b[8:], d.MinVersion.Build)
	return b
}

func parseDependency(b []byte) (Dependency, error) {
	if len(b) != dependencySize {
		return Dependency{}, fmt.Errorf("length %d, want %d: %w", len(b), dependencySize, ErrMalformed)
	}
	return Dependency{ImageID: b[0], MinVersion: Version{Major: b[4], Minor: b[5],
		Revision: binary.LittleEndian.Uint16(b[6:]), Build: binary.LittleEndian.Uint32(b[8:])}}, nil
}

var dependencyRE = regexp.MustCompile(`^\(\s*(\d+)\s*,\s*([0-9.+]+)\s*\)$`)

// ParseDependencies reads dependencies as imgtool's -d writes them:
// "(1,1.2.3+0)" or several, "(1,1.2.3),(2,2.0.0)".
func ParseDependencies(s string) ([]Dependency, error) {
	var out []Dependency
	for _, part := range splitDependencies(s) {
		m := dependencyRE.FindStringSubmatch(part)
		if m == nil {
			return nil, fmt.Errorf("dependency %q: want (IMAGE,VERSION), e.g. (1,1.2.3+0)", part)
		}
		id, err := strconv.ParseUint(m[1], 10, 8)
		if err != nil {
			return nil, fmt.Errorf("dependency %q: image index %s: want 0..255", part, m[1])
		}
		v, err := ParseVersion(m[2])
		if err != nil {
			return nil, fmt.Errorf("dependency %q: %w", part, err)
		}
		out = append(out, Dependency{ImageID: uint8(id), MinVersion: v})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dependency %q: want (IMAGE,VERSION), e.g. (1,1.2.3+0)", s)
	}
	return out, nil
}

// splitDependencies splits "(1,1.0),(2,2.0)" at the commas between groups.
func splitDependencies(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		parts = append(parts, rest)
	}
	return parts
}
