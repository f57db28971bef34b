//go:build unix

package flash

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive advisory lock on f without waiting: a second
// emulator over the same file would see the first one's writes half done
// and write its own over them, which no device allows.
func lockFile(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EWOULDBLOCK):
		who := "another process"
		if pid := lockHolder(f); pid > 0 {
			who = fmt.Sprintf("process %d", pid)
		}
		return fmt.Errorf("%s has it open (an otarun or a port plugin on the same device): stop it first, or give another flash file: %w", who, ErrInUse)
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		return nil // a file system without locks: no guard, as before
	default:
		return fmt.Errorf("lock: %w", err)
	}
}
