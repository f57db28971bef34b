package otaport_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/agent"
)

const deviceConfigDoc = "docs/device-config.md"

// yamlFields lists the fields of device.yaml as dotted paths
// ("health_check.timeout"), from the yaml tags of t and of the structs it
// holds, in declaration order.
func yamlFields(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		out = append(out, prefix+name)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, yamlFields(f.Type, prefix+name+".")...)
		}
	}
	return out
}

// tableRows returns the cells of the table rows of the doc's section
// heading whose first cell starts with a code span (a field's name).
func tableRows(t *testing.T, doc, heading string) [][]string {
	t.Helper()
	_, section, ok := strings.Cut(doc, "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("%s: no \"## %s\" section", deviceConfigDoc, heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows [][]string
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

// documentedFields reads the "Fields" table of the doc: the field of each
// row (its first cell, in backticks) and the row's cells.
func documentedFields(t *testing.T, doc string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for _, cells := range tableRows(t, doc, "Fields") {
		field := strings.Trim(cells[0], "`")
		if _, dup := rows[field]; dup {
			t.Errorf("%s: %s has two rows", deviceConfigDoc, field)
		}
		rows[field] = cells
	}
	return rows
}

// fieldsWithMistakes lists the fields the mistakes table has a row for:
// the code spans of each row's first cell.
func fieldsWithMistakes(t *testing.T, doc string) []string {
	t.Helper()
	var out []string
	for _, cells := range tableRows(t, doc, "Mistakes and what they print") {
		for span := range strings.SplitSeq(cells[0], ",") {
			out = append(out, strings.Trim(strings.TrimSpace(span), "`"))
		}
	}
	return out
}

// TestDeviceConfigDoc_MatchesConfig: docs/device-config.md has a row for
// every field of agent.Config (nested ones included) and none for a field
// it has not, each row with its type, default, example and meaning; every
// field has a row in the mistakes table; and the doc's example device.yaml
// parses.
func TestDeviceConfigDoc_MatchesConfig(t *testing.T) {
	b, err := os.ReadFile(deviceConfigDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	fields := yamlFields(reflect.TypeFor[agent.Config](), "")
	rows := documentedFields(t, doc)
	for _, f := range fields {
		cells, ok := rows[f]
		if !ok {
			t.Errorf("%s: field %s of agent.Config has no row in the Fields table: document it", deviceConfigDoc, f)
			continue
		}
		// field | type | default | example | what it is | flag (may be empty)
		if len(cells) != 6 {
			t.Errorf("%s: the row of %s has %d cells, want 6", deviceConfigDoc, f, len(cells))
			continue
		}
		for i, name := range []string{"type", "default", "example", "what it is"} {
			if cells[i+1] == "" {
				t.Errorf("%s: the row of %s has no %s", deviceConfigDoc, f, name)
			}
		}
	}
	mistakes := fieldsWithMistakes(t, doc)
	for _, f := range fields {
		if !slices.Contains(mistakes, f) {
			t.Errorf("%s: field %s has no row in the mistakes table: say what a mistake in it prints", deviceConfigDoc, f)
		}
	}
	for _, f := range mistakes {
		if !slices.Contains(fields, f) {
			t.Errorf("%s: the mistakes table names %s, which agent.Config does not have", deviceConfigDoc, f)
		}
	}
	for f := range rows {
		if !slices.Contains(fields, f) {
			t.Errorf("%s: the Fields table documents %s, which agent.Config does not have: remove it or fix its name", deviceConfigDoc, f)
		}
	}

	_, example, ok := strings.Cut(doc, "```yaml\n")
	if !ok {
		t.Fatalf("%s: no example (a ```yaml block)", deviceConfigDoc)
	}
	example, _, _ = strings.Cut(example, "```")
	if _, err := agent.ParseConfig([]byte(example), deviceConfigDoc+" (example)"); err != nil {
		t.Errorf("the example does not parse: %v", err)
	}
}
