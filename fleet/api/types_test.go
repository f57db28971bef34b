package api

import (
	"reflect"
	"strings"
	"testing"
)

// TestTypes_HoldNoRecords: no type the API answers with or reads embeds or
// holds a type of fleet/store or fleet/campaign, at any depth, so a field
// added to a store record (a secret, a server path) is never published
// before it is added to the API on purpose. Before, api.Device embedded
// store.Device and hid the secret by shadowing one field.
func TestTypes_HoldNoRecords(t *testing.T) {
	for _, v := range []any{Device{}, AddDevice{}, Image{}, Campaign{}, Status{}, CreateCampaign{}, Error{}} {
		checkNoRecords(t, reflect.TypeOf(v), reflect.TypeOf(v).Name(), map[reflect.Type]bool{})
	}
}

func checkNoRecords(t *testing.T, typ reflect.Type, path string, seen map[reflect.Type]bool) {
	t.Helper()
	if seen[typ] {
		return
	}
	seen[typ] = true
	if pkg := typ.PkgPath(); strings.HasSuffix(pkg, "/fleet/store") || strings.HasSuffix(pkg, "/fleet/campaign") {
		t.Errorf("%s is %s, a type of %s: give the API its own type and a mapping function", path, typ, pkg)
		return
	}
	switch typ.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		checkNoRecords(t, typ.Elem(), path+"[]", seen)
	case reflect.Map:
		checkNoRecords(t, typ.Key(), path+"[key]", seen)
		checkNoRecords(t, typ.Elem(), path+"[]", seen)
	case reflect.Struct:
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous {
				t.Errorf("%s embeds %s: list the fields the API publishes instead", path, f.Type)
			}
			checkNoRecords(t, f.Type, path+"."+f.Name, seen)
		}
	}
}
