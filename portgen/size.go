package portgen

import (
	"errors"

	"gopkg.in/yaml.v3"

	"github.com/otaport/otaport/core/size"
)

// MaxSize is the largest byte count a board may write (size.Max).
const MaxSize = size.Max

// ParseSize parses a byte count as the board format writes it. It is
// size.Parse, the parser every command-line size flag uses too, so that a
// value a board file takes is a value a flag takes.
func ParseSize(s string) (Size, error) {
	v, err := size.Parse(s)
	return Size(v), err
}

// UnmarshalYAML lets yaml.Unmarshal read a Size in every form ParseSize
// accepts, so that code which decodes a board directly (tests, tools) reads
// the same values as Parse. Parse itself walks the node tree to keep lines.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("a size is a single value such as 4096, 0x1000 or 4KiB")
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// formatSize writes a byte count as a board file would (size.Format).
func formatSize(v uint64) string { return size.Format(v) }
