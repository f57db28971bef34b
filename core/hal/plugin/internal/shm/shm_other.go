//go:build !unix

package shm

import (
	"errors"
	"fmt"
)

// ErrSize is what Map returns when the file is not the size the host said.
var ErrSize = errors.New("size mismatch")

var errNoShared = errors.New("shared memory is not available on this system")

// Create fails: this system has no shared memory.
func Create(uint64) ([]byte, string, string, error) { return nil, "", "", errNoShared }

// Map fails: this system has no shared memory.
func Map(string, uint64) ([]byte, error) {
	return nil, fmt.Errorf("attach shared memory: %w", errNoShared)
}

// Unmap does nothing.
func Unmap([]byte) error { return nil }
