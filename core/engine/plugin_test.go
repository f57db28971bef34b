package engine_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/core/hal/plugin"
	"github.com/otaport/otaport/core/image"
)

// The test binary doubles as a port plugin (as go-plugin's own tests do):
// run with pluginBoardEnv set, it serves the catalog board of that name (its
// layout from core/hal/haltest) over the flash file in OTAPORT_FLASH, and
// with dieAfterEnv set it kills itself with SIGKILL in the middle of the
// write that crosses that many bytes.
const (
	pluginBoardEnv = "OTAPORT_ENGINE_TEST_BOARD"
	dieAfterEnv    = "OTAPORT_ENGINE_TEST_DIE_AFTER"
	bootKeyEnv     = "OTAPORT_ENGINE_TEST_BOOT_KEY"
)

func TestMain(m *testing.M) {
	if board := os.Getenv(pluginBoardEnv); board != "" {
		if err := servePlugin(board); err != nil {
			fmt.Fprintln(os.Stderr, "test plugin:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func servePlugin(board string) error {
	l, ok := haltest.Layout(board)
	if !ok {
		return fmt.Errorf("board %q is not among core/hal/haltest's boards", board)
	}
	dev, err := flash.OpenFile(os.Getenv("OTAPORT_FLASH"), l.Flash)
	if err != nil {
		return err
	}
	var keys []crypto.PublicKey
	if f := os.Getenv(bootKeyEnv); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		k, err := image.LoadPublicKey(b)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	p, err := boot.NewPlatform(l, dev, boot.Options{Keys: keys, CloseDevice: true})
	if err != nil {
		return err
	}
	if n := os.Getenv(dieAfterEnv); n != "" {
		left, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return err
		}
		plugin.Serve(&dyingPort{Platform: p, left: left, align: int(l.Flash.WriteAlign)})
		return nil
	}
	plugin.Serve(p)
	return nil
}

// dyingPort is a port whose process dies in the middle of a write.
type dyingPort struct {
	*boot.Platform
	left  int64
	align int
}

func (d *dyingPort) Write(ctx context.Context, off uint64, data []byte) error {
	if int64(len(data)) >= d.left {
		half := len(data) / 2 / d.align * d.align
		_ = d.Platform.Write(ctx, off, data[:half])
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
	d.left -= int64(len(data))
	return d.Platform.Write(ctx, off, data)
}

// openTestPlugin starts this test binary as the plugin of board.
func openTestPlugin(t *testing.T, board, flashFile, keyFile string, extra ...string) *plugin.Client {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append([]string{pluginBoardEnv + "=" + board, "OTAPORT_FLASH=" + flashFile, bootKeyEnv + "=" + keyFile}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Write data goes inline in the gRPC stream: the shared-memory
	// doorbell of core/hal can miss the first write of a new plugin
	// (serveBell reads req after the host may have posted it), which
	// would hang this test; what is tested here is the engine's side of
	// a plugin crash, the same on either path.
	c, err := plugin.Open(ctx, plugin.ClientConfig{Path: exe, Env: env, CallTimeout: 20 * time.Second, NoSharedMemory: true})
	if err != nil {
		t.Fatalf("start the test plugin: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPlugin_KilledDuringWriteResumes: the port plugin process dies (SIGKILL)
// in the middle of a write; the engine reports the plugin's exit, the
// state stays at the last checkpoint, and after the plugin restarts the
// install resumes from there and completes.
func TestPlugin_KilledDuringWriteResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts plugin processes")
	}
	ctx := context.Background()
	const board = "esp32-devkitc"
	dir := t.TempDir()
	flashFile := filepath.Join(dir, board+".flash")
	k := newKeys(t)
	pemBytes, err := image.MarshalPublicKeyPEM(k.pub[0])
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := engine.Options{Keys: k.pub, ChunkSize: 32 << 10, CheckpointEvery: 64 << 10}
	newEngine := func(c *plugin.Client) *engine.Engine {
		e, err := engine.New(c, c, opts)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	// Factory image, through the plugin.
	c := openTestPlugin(t, board, flashFile, keyFile)
	factory := opts
	factory.AllowDowngrade = true
	ef, err := engine.New(c, c, factory)
	if err != nil {
		t.Fatal(err)
	}
	if err := ef.Install(ctx, engine.Source{URL: writeFile(t, signed(t, k.priv, "1.0.0", 100<<10, 1)), Permanent: true}); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Reboot(ctx); err != nil || res.Version != "1.0.0+0" {
		t.Fatalf("factory boot: %+v, %v", res, err)
	}
	c.Close()

	// The plugin dies in the write that crosses 300 KiB.
	src := writeFile(t, signed(t, k.priv, "1.1.0", 600<<10, 2))
	c = openTestPlugin(t, board, flashFile, keyFile, dieAfterEnv+"="+strconv.Itoa(300<<10))
	err = newEngine(c).Install(ctx, engine.Source{URL: src})
	var exit *plugin.ExitError
	if !errors.As(err, &exit) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("install with a dying plugin: %v, want the plugin's exit (killed)", err)
	}
	c.Close()

	// Restarted, it resumes from the last checkpoint.
	c = openTestPlugin(t, board, flashFile, keyFile)
	e := newEngine(c)
	st, err := e.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != engine.Downloading || st.Offset < 64<<10 || st.Offset > 300<<10 || st.RunningVersion != "1.0.0+0" {
		t.Fatalf("after the restart: state %s at %d, running %s; want downloading between 64 KiB and 300 KiB, 1.0.0 running", st.State, st.Offset, st.RunningVersion)
	}
	if err := e.Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	res, err := c.Reboot(ctx)
	if err != nil || res.Version != "1.1.0+0" {
		t.Fatalf("boot after the resumed install: %+v, %v", res, err)
	}
	if st, err := e.Recover(ctx); err != nil || st.State != engine.Testing {
		t.Fatalf("recover: %+v, %v", st, err)
	}
	if err := e.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
}
