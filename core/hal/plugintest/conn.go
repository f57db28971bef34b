// Package plugintest is test support for port plugins: it serves a
// platform over the plugin wire inside a test, without building a binary.
package plugintest

import (
	"testing"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin"
)

// Conn serves p over a real gRPC connection on a Unix socket inside the
// test process and returns the host's side of it (plugin.Pipe), so a
// port's tests and the conformance kit exercise the wire form of every
// call without a plugin process. The connection is closed when the test
// ends.
func Conn(t testing.TB, p hal.Platform) hal.Platform {
	t.Helper()
	c, stop, err := plugin.Pipe(p)
	if err != nil {
		t.Fatalf("plugintest.Conn: %v", err)
	}
	t.Cleanup(stop)
	return c
}
