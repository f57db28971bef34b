//go:build !unix

package flash

import (
	"errors"
	"os"
)

// mapFile fails: OpenFile then reads the file into memory and writes every
// operation through with WriteAt.
func mapFile(*os.File, int64) ([]byte, error) { return nil, errors.New("no mmap on this system") }

func unmapFile([]byte) error { return nil }
