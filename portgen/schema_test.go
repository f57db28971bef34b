package portgen

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var schemaFile = filepath.Join("..", "docs", "board.schema.json")

// TestSchema_UpToDate fails when docs/board.schema.json differs from what the
// Go types produce; go test ./portgen -run Schema -update rewrites it.
func TestSchema_UpToDate(t *testing.T) {
	got, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	if updating() {
		if err := os.WriteFile(schemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatalf("%v (run go test ./portgen -run Schema -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run go test ./portgen -run Schema -update", schemaFile)
	}
	again, _ := Schema()
	if !bytes.Equal(got, again) {
		t.Error("Schema() is not stable across calls")
	}
}

func TestSchema_Content(t *testing.T) {
	raw, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	defs := s["$defs"].(map[string]any)
	prop := func(def, name string) map[string]any {
		t.Helper()
		d, ok := defs[def].(map[string]any)
		if !ok {
			t.Fatalf("no $defs.%s", def)
		}
		p, ok := d["properties"].(map[string]any)[name].(map[string]any)
		if !ok {
			t.Fatalf("no $defs.%s.properties.%s", def, name)
		}
		return p
	}
	strs := func(v any) []string {
		var out []string
		for _, x := range v.([]any) {
			out = append(out, x.(string))
		}
		return out
	}
	if got := strs(prop("board", "scheme")["enum"]); !slices.Equal(got, Schemes()) {
		t.Errorf("scheme enum %v, want %v", got, Schemes())
	}
	if got := strs(prop("image", "signature")["enum"]); !slices.Equal(got, Signatures()) {
		t.Errorf("signature enum %v, want %v", got, Signatures())
	}
	if got := prop("board", "name")["pattern"]; got != boardNameRe.String() {
		t.Errorf("name pattern %v", got)
	}
	if got := prop("flash", "size")["$ref"]; got != "#/$defs/size" {
		t.Errorf("flash.size is %v, want a $ref to the size definition", got)
	}
	// Every field of every type is in the schema with a description, and
	// the schema's required lists are the parser's.
	for _, typ := range []reflect.Type{reflect.TypeOf(Board{}), reflect.TypeOf(Flash{}), reflect.TypeOf(SectorRun{}), reflect.TypeOf(Partition{}), reflect.TypeOf(Image{})} {
		def := defs[defName(typ)].(map[string]any)
		var req []string
		if r, ok := def["required"]; ok {
			req = strs(r)
		}
		for _, f := range yamlFields(typ) {
			p := prop(defName(typ), f)
			if d, _ := p["description"].(string); len(d) < 10 {
				t.Errorf("%s.%s: description %q", typ.Name(), f, d)
			}
			if got, want := slices.Contains(req, f), fieldSpecs[specKey(typ, f)].required; got != want {
				t.Errorf("%s.%s: required in schema %v, in parser %v", typ.Name(), f, got, want)
			}
		}
		if len(def["properties"].(map[string]any)) != len(yamlFields(typ)) {
			t.Errorf("%s: schema has properties the type lacks", typ.Name())
		}
	}
	// Every $ref resolves.
	for _, ref := range refs(s) {
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok || defs[name] == nil {
			t.Errorf("dangling $ref %q", ref)
		}
	}
}

func refs(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "$ref" {
				out = append(out, s)
			}
			out = append(out, refs(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, refs(e)...)
		}
	}
	return out
}
