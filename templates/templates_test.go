package templates

import (
	"io/fs"
	"slices"
	"testing"
	"text/template"
)

func TestParse_HasEveryTemplate(t *testing.T) {
	funcs := template.FuncMap{"comment": func(string) string { return "" }, "quote": func(string) string { return "" }}
	set, err := Parse(funcs)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Names() {
		if set.Lookup(name) == nil {
			t.Errorf("template %s missing", name)
		}
	}
	// A template file that Names does not list is never generated.
	stored, err := fs.Glob(files, "*.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range stored {
		if !slices.Contains(Names(), name) {
			t.Errorf("template %s is not listed in Names", name)
		}
	}
}
