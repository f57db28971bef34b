// Package conformancetest runs the port conformance kit inside go test:
// each case of core/conformance as a subtest, so a port that passes its go
// test passes otarun conformance, and the other way round.
package conformancetest

import (
	"testing"

	"github.com/otaport/otaport/core/conformance"
)

// Test runs every case against the port open starts, each as a subtest.
func Test(t *testing.T, open conformance.Target) {
	t.Helper()
	TestWith(t, open, conformance.Options{})
}

// TestWith is Test with options.
func TestWith(t *testing.T, open conformance.Target, opts conformance.Options) {
	t.Helper()
	for _, c := range conformance.Cases() {
		t.Run(c.Name(), func(t *testing.T) {
			skip, err := c.Run(t.Context(), open, opts)
			switch {
			case err != nil:
				t.Fatal(err)
			case skip != "":
				t.Skip(skip)
			}
		})
	}
}
