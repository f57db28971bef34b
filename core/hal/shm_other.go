//go:build !unix

package hal

import "errors"

var errNoShared = errors.New("shared memory is not available on this system")

func createShared(uint64) ([]byte, string, string, error) { return nil, "", "", errNoShared }

func mapShared(string, uint64) ([]byte, error) {
	return nil, Errorf(CodeUnsupported, "attach shared memory: %v", errNoShared)
}

func unmapShared([]byte) error { return nil }
