package templates

import "testing"

func TestParse_HasEveryTemplate(t *testing.T) {
	set, err := Parse()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{README, CHeader, CSource} {
		if set.Lookup(name) == nil {
			t.Errorf("template %s missing", name)
		}
	}
}
