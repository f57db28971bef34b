package portgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/spell"
)

// Problem is one thing wrong in a board file: where, which field, what is
// wrong and how to fix it.
type Problem struct {
	// File is the name the file was parsed under.
	File string
	// Line is the 1-based line of the offending value, 0 when unknown.
	Line int
	// Field is the path of the field ("flash.size", "partitions[3] (ota)").
	Field string
	// Msg says what is wrong and, after a semicolon, how to fix it.
	Msg string
}

// String formats the problem as file:line: field: message, the shape editors
// and CI annotators jump to.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error makes a Problem usable as an error on its own.
func (p Problem) Error() string { return p.String() }

// Errors is every problem found in one board file, in line order. It is the
// error Parse and ParseFile return when a file does not validate.
type Errors []Problem

// Error prints one line per problem.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem to errors.As.
func (e Errors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, p := range e {
		errs[i] = p
	}
	return errs
}

// Limits of a board file. Board files are small (the whole catalog of
// fifteen boards is 16 KiB); the limits refuse a wrong or hostile file at
// once, before it costs seconds and gigabytes.
const (
	// MaxFileSize is the largest board file.
	MaxFileSize = 1 << 20
	// MaxBoards is the most boards a catalog lists.
	MaxBoards = 1000
)

// listLimits bounds the lists of a board, by field path.
var listLimits = map[string]struct {
	max  int
	what string
}{
	"partitions":    {hal.MaxPartitions, "a board has a handful of partitions: check that this is the board file you meant"},
	"flash.sectors": {hal.MaxSectorRuns, "a run is every sector of one size in a row, and real parts have a few: merge runs of one size"},
}

// ParseFile reads and validates a board file: one board, or a catalog with a
// top-level boards: list. Messages name the file as given in path.
func ParseFile(path string) ([]*Board, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read board file: %w", err)
	}
	defer f.Close()
	// One byte past the limit is enough for Parse to refuse the file.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read board file: %w", err)
	}
	return Parse(filepath.ToSlash(path), data)
}

// Parse decodes and validates board YAML; name is used in messages. It
// returns every board of the file, or nil and an Errors with every problem
// found: never part of a file.
func Parse(name string, data []byte) ([]*Board, error) {
	p := &parser{file: name}
	if len(data) > MaxFileSize {
		p.addf(0, "", "the file is more than %s, the limit for a board file; board files are a few KiB (the catalog of fifteen boards is 16KiB): check that %s is the board file you meant, or split it", formatSize(MaxFileSize), name)
		return nil, p.errors()
	}
	boards := p.parse(data)
	if len(p.probs) > 0 {
		return nil, p.errors()
	}
	return boards, nil
}

// parser collects problems while it walks one file's node tree.
type parser struct {
	file  string
	probs Errors
}

func (p *parser) addf(line int, field, format string, args ...any) {
	p.probs = append(p.probs, Problem{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) errors() Errors {
	sort.SliceStable(p.probs, func(i, j int) bool { return p.probs[i].Line < p.probs[j].Line })
	return p.probs
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) parse(data []byte) []*Board {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.addf(0, "", "file is empty; write one board (name: ..., flash: ..., partitions: ...) or a catalog (boards: [...])")
			return nil
		}
		p.syntax(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.addf(extra.Line, "", "a second YAML document (after ---); a file holds one board or one catalog: put several boards under boards:")
		return nil
	} else if !errors.Is(err, io.EOF) {
		p.syntax(err)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		p.addf(0, "", "file is empty; write one board or a catalog (boards: [...])")
		return nil
	}
	root := doc.Content[0]
	if !p.plain(root, "") {
		return nil
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		p.addf(root.Line, "", "file is empty; write one board or a catalog (boards: [...])")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.addf(root.Line, "", "the file holds a %s; a board file is a mapping (name: ..., flash: ...) or a catalog (boards: [...])", kindName(root))
		return nil
	}
	if v := mapValue(root, "boards"); v != nil {
		return p.catalog(root, v)
	}
	b, ok := p.board(root)
	if !ok {
		return nil
	}
	return []*Board{b}
}

// syntax turns a yaml.v3 error into problems with lines.
func (p *parser) syntax(err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, e := range te.Errors {
			p.syntaxLine(e)
		}
		return
	}
	p.syntaxLine(err.Error())
}

func (p *parser) syntaxLine(msg string) {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		// yaml.v3 gives some errors the line where the enclosing
		// construct starts, or the one before: hence "near".
		p.addf(line, "", "YAML syntax near this line: %s; fix the YAML (indentation, quotes, brackets, a missing ':')", m[2])
		return
	}
	p.addf(0, "", "YAML syntax: %s; fix the YAML", strings.TrimPrefix(msg, "yaml: "))
}

func (p *parser) catalog(root, list *yaml.Node) []*Board {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Value != "boards" {
			p.addf(k.Line, k.Value, "unknown top-level field in a catalog; a catalog holds only boards: (move %s into a board entry)", k.Value)
		}
	}
	if !p.plain(list, "boards") {
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		p.addf(list.Line, "boards", "is a %s; write a list of boards, each starting with '- name: ...'", kindName(list))
		return nil
	}
	if len(list.Content) == 0 {
		p.addf(list.Line, "boards", "the catalog is empty; add at least one board")
		return nil
	}
	if len(list.Content) > MaxBoards {
		p.addf(list.Line, "boards", "lists %d boards, more than %d; split the catalog", len(list.Content), MaxBoards)
		return nil
	}
	var boards []*Board
	ok := true
	for i, n := range list.Content {
		path := fmt.Sprintf("boards[%d]", i)
		if !p.plain(n, path) {
			ok = false
			continue
		}
		if n.Kind != yaml.MappingNode {
			p.addf(n.Line, path, "is a %s; each entry of boards is a board mapping (name: ..., flash: ...)", kindName(n))
			ok = false
			continue
		}
		board := p.board
		if mapValue(n, "module") != nil {
			// A port in its own module: the catalog names it only.
			board = func(n *yaml.Node) (*Board, bool) { return p.moduleEntry(n, path) }
		}
		b, valid := board(n)
		ok = ok && valid
		boards = append(boards, b)
	}
	p.catalogRules(boards)
	if !ok {
		return nil
	}
	return boards
}

// catalogRules are the rules across boards: names, and the Go package names
// derived from them, must be unique.
func (p *parser) catalogRules(boards []*Board) {
	byName := map[string]*Board{}
	byPkg := map[string]*Board{}
	for _, b := range boards {
		if !boardNameRe.MatchString(b.Name) {
			continue // reported with the board
		}
		const field = "name"
		if prev, dup := byName[b.Name]; dup {
			p.addf(b.Line, field, "duplicate board name %q (first at line %d); board names become ports/<name>/ and must be unique: rename one", b.Name, prev.Line)
			continue
		}
		byName[b.Name] = b
		pkg := boardPackage(b.Name)
		if prev, dup := byPkg[pkg]; dup {
			p.addf(b.Line, field, "board name %q gives Go package %q, as %q does (line %d); rename one so they differ in more than '-'", b.Name, pkg, prev.Name, prev.Line)
			continue
		}
		byPkg[pkg] = b
	}
}

// board decodes one board mapping and validates it; ok is false when it has
// problems. Validation runs even when decoding found problems, so that one
// pass shows them all; rules that need a field that did not decode are
// skipped rather than reported twice.
func (p *parser) board(n *yaml.Node) (b *Board, ok bool) {
	before := len(p.probs)
	d := &decoder{p: p, pos: positions{}}
	b = &Board{Line: n.Line}
	d.pos[""] = n.Line
	d.structure(n, "", reflect.ValueOf(b).Elem())
	v := &validator{b: b, pos: d.pos, bad: d.bad, file: p.file}
	v.run()
	p.probs = append(p.probs, v.probs...)
	return b, len(p.probs) == before
}

// positions maps a field path ("flash.sectors[1].size") to its line.
type positions map[string]int

// line returns the line of path, or of its nearest parent that has one.
func (ps positions) line(path string) int {
	for {
		if l, ok := ps[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return ps[""]
		}
		path = path[:i]
	}
}

// decoder walks a board's node tree into a Board by reflection over the yaml
// struct tags, so that the fields the parser knows are exactly those of the
// Go types (and of the JSON Schema generated from them).
type decoder struct {
	p   *parser
	pos positions
	bad map[string]bool // fields that are missing or did not decode
}

// field is the name of path in messages: relative to the board, as the
// user wrote it; the line locates the board in a catalog.
func (d *decoder) field(path string) string { return path }

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if d.bad == nil {
		d.bad = map[string]bool{}
	}
	d.bad[path] = true
	d.p.addf(n.Line, d.field(path), format, args...)
}

// plain refuses anchors, aliases, merge keys and custom tags: a board file is
// read by people, and alias expansion is also how hostile YAML blows up.
func (p *parser) plain(n *yaml.Node, field string) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		p.addf(n.Line, field, "YAML aliases (*%s) are not supported; write the value out", n.Value)
		return false
	case n.Anchor != "":
		p.addf(n.Line, field, "YAML anchors (&%s) are not supported; write each value out", n.Anchor)
		return false
	case n.Tag != "" && !strings.HasPrefix(n.Tag, "!!"):
		p.addf(n.Line, field, "custom YAML tag %s is not supported; remove it", n.Tag)
		return false
	}
	return true
}

var sizeType = reflect.TypeOf(Size(0))

// structure decodes mapping n into the struct v.
func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if !d.p.plain(n, d.field(path)) {
		d.markBad(path)
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "is a %s; write a mapping (%s)", kindName(n), strings.Join(yamlFields(v.Type()), ", "))
		return
	}
	fields := yamlFieldIndex(v.Type())
	seen := map[string]int{}
	suggested := map[string]int{} // fields a typo was taken for, and its line
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.p.plain(k, d.field(path)) {
			d.markBad(path)
			continue
		}
		name := k.Value
		sub := joinPath(path, name)
		if k.Tag == "!!merge" {
			d.fail(k, path, "YAML merge keys (<<) are not supported; write the fields out")
			continue
		}
		if line, dup := seen[name]; dup {
			d.fail(k, sub, "set twice (first at line %d); keep one", line)
			continue
		}
		seen[name] = k.Line
		idx, ok := fields[name]
		if !ok {
			known := yamlFields(v.Type())
			if s := spell.Nearest(name, known); s != "" {
				suggested[s] = k.Line
				d.fail(k, sub, "unknown field; did you mean %s?", s)
			} else {
				d.fail(k, sub, "unknown field; known fields here: %s", strings.Join(known, ", "))
			}
			continue
		}
		// Messages about a value point at its key: a block mapping or
		// list starts on the line after it.
		d.pos[sub] = k.Line
		d.value(val, sub, v.Field(idx))
	}
	for f, line := range suggested {
		if _, ok := seen[f]; !ok {
			// Present in intent but not decoded: rules that need it are
			// skipped instead of reporting it missing a second time.
			d.pos[joinPath(path, f)] = line
			d.markBad(joinPath(path, f))
		}
	}
	for _, f := range yamlFields(v.Type()) {
		if _, ok := seen[f]; ok {
			continue
		}
		if spec, ok := fieldSpecs[specKey(v.Type(), f)]; ok && spec.required {
			sub := joinPath(path, f)
			d.markBad(sub)
			if _, ok := suggested[f]; ok {
				continue // the typo's message already points at it
			}
			d.p.addf(d.pos.line(path), d.field(sub), "missing; %s", spec.hint)
		}
	}
}

func (d *decoder) markBad(path string) {
	if d.bad == nil {
		d.bad = map[string]bool{}
	}
	d.bad[path] = true
}

// value decodes one node into v according to v's Go type.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if !d.p.plain(n, d.field(path)) {
		d.markBad(path)
		return
	}
	switch {
	case v.Type() == sizeType:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(n, path, "is a %s; write a size such as 4096, 0x1000, 4KiB or 1MiB", kindName(n))
			return
		}
		s, err := ParseSize(n.Value)
		if err != nil {
			d.fail(n, path, "%v", err)
			return
		}
		v.SetUint(uint64(s))
	case v.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(n, path, "is a %s; write a text value", kindName(n))
			return
		}
		v.SetString(n.Value)
	case v.Kind() == reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(n, path, "is a %s; write a whole number such as 3", kindName(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 10, 32)
		if err != nil || (len(n.Value) > 1 && n.Value[0] == '0') {
			d.fail(n, path, "%q is not a whole number; write it in decimal, such as 3", n.Value)
			return
		}
		v.SetInt(i)
	case v.Kind() == reflect.Struct:
		d.structure(n, path, v)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "is a %s; write a list (- item or [item, item])", kindName(n))
			return
		}
		if l, ok := listLimits[path]; ok && len(n.Content) > l.max {
			// At the key: the list itself may start on the next line.
			d.markBad(path)
			d.p.addf(d.pos.line(path), d.field(path), "lists %d entries, more than the limit of %d; %s", len(n.Content), l.max, l.what)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			d.pos[sub] = item.Line
			d.value(item, sub, s.Index(i))
		}
		v.Set(s)
	default:
		panic(fmt.Sprintf("portgen: no decoder for %s (field %s)", v.Type(), path))
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null value"
		}
		return fmt.Sprintf("single value (%q)", n.Value)
	}
	return "document"
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// yamlFields lists the YAML names of a struct's fields in declaration order.
func yamlFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func yamlFieldIndex(t reflect.Type) map[string]int {
	idx := map[string]int{}
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			idx[name] = i
		}
	}
	return idx
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || name == "" {
		return ""
	}
	return name
}
