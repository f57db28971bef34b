package portgen

import (
	"gopkg.in/yaml.v3"
)

// ModuleEntry is the form of a catalog entry for a port that lives in its
// own Go module, outside otaport's repository (otagen --module made it): the
// board's name and the module's path. The module holds the board's
// description, so the catalog does not repeat it, and otagen does not
// generate the port: the module's author does. Parse returns such an entry
// as a Board with only Name, Module and Line set.
type ModuleEntry struct {
	Name   string `yaml:"name" json:"name"`
	Module string `yaml:"module" json:"module"`
}

// OutOfTree says whether b is a catalog entry for a port in its own module.
func (b *Board) OutOfTree() bool { return b.Module != "" }

// moduleEntry decodes one catalog entry that has a module: field; ok is
// false when it has problems.
func (p *parser) moduleEntry(n *yaml.Node, path string) (b *Board, ok bool) {
	before := len(p.probs)
	b = &Board{Line: n.Line}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !p.plain(k, path) || !p.plain(v, k.Value) {
			continue
		}
		if seen[k.Value] {
			p.addf(k.Line, k.Value, "set twice; keep one")
			continue
		}
		seen[k.Value] = true
		var dst *string
		switch k.Value {
		case "name":
			dst = &b.Name
		case "module":
			dst = &b.Module
		default:
			p.addf(k.Line, k.Value, "a catalog entry with module: names only the board and its module; "+
				"the board's description lives in the module's board.yaml: remove %s", k.Value)
			continue
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
			p.addf(v.Line, k.Value, "is a %s; write a text value", kindName(v))
			continue
		}
		*dst = v.Value
	}
	switch {
	case !seen["name"]:
		p.addf(n.Line, "name", "missing; give the board's name, as in the module's board.yaml")
	case b.Name != "" && !boardNameRe.MatchString(b.Name):
		p.addf(n.Line, "name", "%q is not a board name; use lower-case letters, digits and '-', starting with a letter", b.Name)
	}
	if b.Module != "" {
		if err := checkModulePath(b.Module); err != nil {
			p.addf(n.Line, "module", "%v", err)
		}
	}
	return b, len(p.probs) == before
}
