//go:build !linux

package plugin

import "os/exec"

// tieToHost does nothing where the kernel has no parent-death signal:
// Serve's parent watch ends an orphaned plugin.
func tieToHost(*exec.Cmd) {}
