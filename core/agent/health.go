package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// HealthInfo is what a health check is told about the image it judges.
type HealthInfo struct {
	Version  string // the version now running, on trial
	Previous string // the version it replaced
	Board    string
}

// RunHealthCheck runs the configured command once. nil means healthy; an
// error says why not, with the last line the command printed. The command
// gets OTARUN_VERSION, OTARUN_PREVIOUS_VERSION and OTARUN_BOARD in its
// environment, so one script can serve every image (the demo marks an
// unhealthy image by its version). A command that outlives the timeout is
// killed, with its children.
func RunHealthCheck(ctx context.Context, h HealthCheck, info HealthInfo) error {
	if len(h.Command) == 0 {
		return nil
	}
	timeout := time.Duration(h.Timeout)
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Command[0], h.Command[1:]...)
	cmd.Env = append(os.Environ(),
		"OTARUN_VERSION="+info.Version,
		"OTARUN_PREVIOUS_VERSION="+info.Previous,
		"OTARUN_BOARD="+info.Board,
	)
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so a timeout kills a shell's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	said := out.last()
	if said != "" {
		said = ": " + said
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("health check %s did not finish within %v%s", h.Command[0], timeout, said)
	case ctx.Err() != nil:
		return fmt.Errorf("health check %s: %w", h.Command[0], ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("health check %s failed (%s)%s", h.Command[0], ee.ProcessState, said)
	}
	return fmt.Errorf("health check %s: %w", h.Command[0], err)
}

// tail keeps the end of a command's output.
type tail struct{ buf []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

// last returns the last non-empty line, clipped.
func (t *tail) last() string {
	lines := bytes.Split(bytes.TrimSpace(t.buf), []byte("\n"))
	s := strings.TrimSpace(string(lines[len(lines)-1]))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
