package all_test

import (
	"reflect"
	"testing"

	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/ports/all"
)

// core's tests run on copies of catalog layouts (core/hal/haltest), since
// core does not import the ports: each copy must be what the board's port
// declares, or those tests no longer run on the catalog's geometries.
func TestHaltest_LayoutsMatchTheCatalog(t *testing.T) {
	for _, name := range haltest.Boards() {
		e, ok := all.Lookup(name)
		if !ok {
			t.Errorf("core/hal/haltest holds %s, which is not in the catalog: remove it or use another board", name)
			continue
		}
		got, _ := haltest.Layout(name)
		if want := e.Layout(); !reflect.DeepEqual(got, want) {
			t.Errorf("core/hal/haltest's %s differs from its port's layout; copy the port's Layout() into core/hal/haltest/layouts.go:\n got %+v\nwant %+v", name, got, want)
		}
	}
}
