//go:build unix

package plugin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otaport/otaport/core/hal/plugin"
)

const (
	// hostEnv makes the re-executed test binary a host: it opens a plugin
	// (the test binary once more), says "ready" and waits to be killed.
	hostEnv = "OTAPORT_HAL_TEST_HOST"
	// pidFileEnv is where a plugin started by the tests writes its PID.
	pidFileEnv = "OTAPORT_HAL_TEST_PIDFILE"
)

func hostPlugin() {
	if os.Getenv(hostEnv) == "raw" {
		hostRaw()
	}
	c, err := plugin.Open(context.Background(), plugin.ClientConfig{
		Path:   os.Args[0],
		Env:    []string{helperEnv + "=minimal"},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Println("ready")
	select {} // until killed
}

// hostRaw starts the plugin with a bare exec, as a host without
// plugin.Open would (and without the kernel's parent-death signal), waits
// for go-plugin's handshake line and says "ready": only the plugin's own
// watch on its parent can end it then.
func hostRaw() {
	h := plugin.Handshake()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=minimal", h.MagicCookieKey+"="+h.MagicCookieValue)
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err == nil {
		_, err = bufio.NewReader(out).ReadString('\n')
	}
	if err != nil {
		fmt.Println("start:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {} // until killed
}

// alive reports whether pid is a process that has not exited: a zombie
// (exited, not reaped, which a container's init may never do) is gone.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err) // no /proc: kill(0) said it exists
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(stat)
	rest := s[strings.LastIndexByte(s, ')')+1:]
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// TestOpen_KilledHostTakesThePluginWithIt: kill -9 of the host (otarun
// agent or install) must not leave its port plugin running on the flash
// file, reparented to init, where a restarted host would start a second
// one over the same flash. "open" is a host using plugin.Open (the kernel
// kills the plugin with its host); "raw" a host that starts the plugin by
// hand, which only Serve's watch on its parent ends.
func TestOpen_KilledHostTakesThePluginWithIt(t *testing.T) {
	for _, host := range []string{"open", "raw"} {
		t.Run(host, func(t *testing.T) { killHost(t, host) })
	}
}

func killHost(t *testing.T, mode string) {
	pidFile := filepath.Join(t.TempDir(), "plugin.pid")
	host := exec.Command(os.Args[0], "-test.run=^$")
	host.Env = append(os.Environ(), hostEnv+"="+mode, pidFileEnv+"="+pidFile)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	host.Stderr = os.Stderr
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		_ = host.Process.Kill()
		_ = host.Wait()
		t.Fatalf("host: %q, %v", line, err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if !alive(pid) {
		t.Fatalf("plugin %d is not running while its host is", pid)
	}

	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	// The plugin's end is an event, not a duration: wait for it as long as
	// the test may run, polling.
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		defer cancel()
	}
	for alive(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("plugin %d still runs after its host was killed", pid)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
