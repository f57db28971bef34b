//go:build !unix

package flash

import "os"

// lockFile does nothing where flock is missing: two emulators over one file
// are not detected there.
func lockFile(*os.File) error { return nil }
