package plugin

import (
	"os/exec"
	"syscall"
)

// tieToHost asks the kernel to kill the plugin when the host dies
// (PR_SET_PDEATHSIG): a host killed with SIGKILL runs no clean-up, and a
// plugin left behind would hold the flash while a restarted host starts a
// second one over it. The signal follows the thread that started the
// process; the runtime keeps its threads, and Serve's parent watch covers
// the rest.
func tieToHost(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
