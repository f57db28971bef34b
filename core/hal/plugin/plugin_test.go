package plugin_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin"
	"github.com/otaport/otaport/core/hal/plugintest"
)

// helperEnv selects what the re-executed test binary serves: "full" (KV
// and Reboot, strict flash), "minimal" (neither), "bench" (full, lenient
// flash so chunks can be rewritten without erasing).
const helperEnv = "OTAPORT_HAL_TEST_PLUGIN"

// TestMain turns the test binary into a port plugin when the host test
// starts it with helperEnv set: real processes, no separate build.
func TestMain(m *testing.M) {
	if kind := os.Getenv(helperEnv); kind != "" {
		if f := os.Getenv(pidFileEnv); f != "" {
			_ = os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0o600)
		}
		servePlugin(kind)
		os.Exit(0)
	}
	if os.Getenv(hostEnv) != "" {
		hostPlugin()
	}
	os.Exit(m.Run())
}

func servePlugin(kind string) {
	logger := plugin.PluginLogger()
	switch kind {
	case "minimal":
		p, err := newTestPlatform(true, logger)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		plugin.Serve(p)
	case "full", "bench":
		p, err := newFullPlatform(kind == "full", logger)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		plugin.Serve(p)
	case "fail":
		// A port that cannot open its flash, as a generated main says so.
		fmt.Fprintln(os.Stderr, filepath.Base(os.Args[0])+": "+failWords)
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: want full, minimal, bench or fail\n", helperEnv, kind)
		os.Exit(1)
	}
}

// openPlugin starts the test binary as a plugin of the given kind.
func openPlugin(t testing.TB, kind string, cfg plugin.ClientConfig) *plugin.Client {
	t.Helper()
	cfg.Path = os.Args[0]
	cfg.Env = append(cfg.Env, helperEnv+"="+kind)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := plugin.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// connections are the two ways a test reaches a port across the boundary.
type connection struct {
	name string
	open func(t *testing.T) hal.Platform
}

func connections() []connection {
	return []connection{
		{"process", func(t *testing.T) hal.Platform { return openPlugin(t, "full", plugin.ClientConfig{}) }},
		{"process-stream", func(t *testing.T) hal.Platform {
			c := openPlugin(t, "full", plugin.ClientConfig{})
			plugin.WriteOverStream(c)
			return c
		}},
		{"process-inline", func(t *testing.T) hal.Platform {
			return openPlugin(t, "full", plugin.ClientConfig{NoSharedMemory: true})
		}},
		{"testconn", func(t *testing.T) hal.Platform {
			p, err := newFullPlatform(true, nil)
			if err != nil {
				t.Fatal(err)
			}
			return plugintest.Conn(t, p)
		}},
	}
}

func pattern(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func TestPlugin_RoundTrip(t *testing.T) {
	for _, conn := range connections() {
		t.Run(conn.name, func(t *testing.T) {
			ctx := t.Context()
			p := conn.open(t)

			info, err := p.Describe(ctx)
			if err != nil {
				t.Fatalf("Describe: %v", err)
			}
			want := testLayout()
			if !layoutEqual(info.Layout, want) {
				t.Errorf("Describe layout = %+v, want %+v", info.Layout, want)
			}
			if got, want := info.Capabilities, []string{"extra", plugin.CapKV, plugin.CapReboot}; !slices.Equal(got, want) {
				t.Errorf("capabilities = %q, want %q", got, want)
			}
			if len(info.Boot.Slots) != 2 || !info.Boot.Slots[0].Active || info.Boot.Slots[0].Version != "1.0.0+0" || info.Boot.BootCount != 2 || info.Boot.SecurityCounter != 7 {
				t.Errorf("boot state = %+v", info.Boot)
			}

			// Chunks below, at and above the shared memory size (4 MiB),
			// and a short final chunk the port pads.
			sizes := []int{4 << 10, 64 << 10, 1 << 20, 5 << 20, 100}
			total := 0
			for _, n := range sizes {
				total += n
			}
			img := pattern(1, total)
			if err := p.Init(ctx, hal.InitRequest{Size: uint64(total)}); err != nil {
				t.Fatalf("Init: %v", err)
			}
			off := 0
			for _, n := range sizes {
				if err := p.Write(ctx, uint64(off), img[off:off+n]); err != nil {
					t.Fatalf("Write %d bytes at 0x%x: %v", n, off, err)
				}
				off += n
			}
			got, err := p.Read(ctx, 0, total+4)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Equal(got[:total], img) {
				t.Fatalf("read back differs from what was written (first difference at %d)", firstDiff(got, img))
			}
			if !bytes.Equal(got[total:], []byte{0xFF, 0xFF, 0xFF, 0xFF}) {
				t.Errorf("padding of the short chunk = % x, want erased bytes", got[total:])
			}
			if err := p.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest, Size: uint64(total)}); err != nil {
				t.Fatalf("SetBoot: %v", err)
			}
			info, err = p.Describe(ctx)
			if err != nil || !info.Boot.Slots[1].Pending {
				t.Errorf("after SetBoot(test): ota pending = %v (err %v), want true", info.Boot.Slots[1].Pending, err)
			}
			if err := p.Rollback(ctx); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
		})
	}
}

func layoutEqual(a, b hal.Layout) bool {
	return a.Board == b.Board && a.Vendor == b.Vendor && a.SoC == b.SoC && a.Scheme == b.Scheme &&
		a.Bootloader == b.Bootloader && a.Signature == b.Signature && a.BootAttempts == b.BootAttempts &&
		a.Flash.Base == b.Flash.Base && a.Flash.Size == b.Flash.Size && a.Flash.WriteAlign == b.Flash.WriteAlign &&
		a.Flash.EraseValue == b.Flash.EraseValue && slices.Equal(a.Flash.Sectors, b.Flash.Sectors) &&
		slices.Equal(a.Partitions, b.Partitions)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestPlugin_ErrorsKeepCodeAndMessage runs each failing call in-process and
// across the boundary: the host must see the same code and the same text.
func TestPlugin_ErrorsKeepCodeAndMessage(t *testing.T) {
	cases := []struct {
		name string
		call func(ctx context.Context, p hal.Platform) error
		want *hal.Error
	}{
		{"misaligned write", func(ctx context.Context, p hal.Platform) error {
			return p.Write(ctx, 3, []byte("12345678"))
		}, hal.ErrMisaligned},
		{"write past the slot", func(ctx context.Context, p hal.Platform) error {
			return p.Write(ctx, 8<<20-8, make([]byte, 16))
		}, hal.ErrOutOfBounds},
		{"write over written bytes", func(ctx context.Context, p hal.Platform) error {
			if err := p.Write(ctx, 0, []byte("abcdefgh")); err != nil {
				return fmt.Errorf("first write: %w", err)
			}
			return p.Write(ctx, 0, []byte("ABCDEFGH"))
		}, hal.ErrNotErased},
		{"read past the slot", func(ctx context.Context, p hal.Platform) error {
			_, err := p.Read(ctx, 8<<20, 1)
			return err
		}, hal.ErrOutOfBounds},
		{"init too big", func(ctx context.Context, p hal.Platform) error {
			return p.Init(ctx, hal.InitRequest{Size: 9 << 20})
		}, hal.ErrInvalid},
		{"bad boot mode", func(ctx context.Context, p hal.Platform) error {
			return p.SetBoot(ctx, hal.BootRequest{Mode: 42})
		}, hal.ErrInvalid},
		{"rollback without image", func(ctx context.Context, p hal.Platform) error {
			return p.Rollback(ctx)
		}, hal.ErrNoImage},
		{"kv set empty key", func(ctx context.Context, p hal.Platform) error {
			return p.(hal.KV).Set(ctx, "", []byte("x"))
		}, hal.ErrInvalid},
	}
	for _, conn := range connections() {
		t.Run(conn.name, func(t *testing.T) {
			p := conn.open(t)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					ctx := t.Context()
					local, err := newFullPlatform(true, nil)
					if err != nil {
						t.Fatal(err)
					}
					want := tc.call(ctx, local)
					if !errors.Is(want, tc.want) {
						t.Fatalf("in-process error %v is not %v: the case is wrong", want, tc.want)
					}
					got := tc.call(ctx, p)
					if !errors.Is(got, tc.want) {
						t.Errorf("error %v: errors.Is(err, %v) is false", got, tc.want)
					}
					if hal.CodeOf(got) != tc.want.Code {
						t.Errorf("CodeOf(%v) = %v, want %v", got, hal.CodeOf(got), tc.want.Code)
					}
					if got == nil || got.Error() != want.Error() {
						t.Errorf("message = %q, want the in-process %q", got, want)
					}
				})
			}
		})
	}
}

// codePlatform fails every call with the code it is told.
type codePlatform struct {
	*testPlatform
	code hal.Code
}

func (p *codePlatform) Rollback(context.Context) error {
	return fmt.Errorf("rollback on %s: %w", p.layout.Board, hal.Errorf(p.code, "the %v reason", p.code))
}

func (p *codePlatform) Write(context.Context, uint64, []byte) error {
	return hal.Errorf(p.code, "write: the %v reason", p.code)
}

func (p *codePlatform) Read(context.Context, uint64, int) ([]byte, error) {
	return nil, hal.Errorf(p.code, "read: the %v reason", p.code)
}

func TestPipe_EveryCodeCrosses(t *testing.T) {
	for c := hal.CodeUnknown; c <= hal.CodeNoImage; c++ {
		t.Run(c.String(), func(t *testing.T) {
			base, err := newTestPlatform(true, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := plugintest.Conn(t, &codePlatform{testPlatform: base, code: c})
			err = p.Rollback(t.Context())
			if hal.CodeOf(err) != c {
				t.Errorf("unary: CodeOf(%v) = %v, want %v", err, hal.CodeOf(err), c)
			}
			if want := fmt.Sprintf("rollback on test-board: the %v reason", c); err == nil || err.Error() != want {
				t.Errorf("unary: message %q, want %q", err, want)
			}
			err = p.Write(t.Context(), 0, []byte("12345678"))
			if hal.CodeOf(err) != c || err.Error() != fmt.Sprintf("write: the %v reason", c) {
				t.Errorf("stream: error %q code %v, want code %v", err, hal.CodeOf(err), c)
			}
			// A read through the doorbell (shared memory is attached by
			// the write) and one too large for it, over gRPC.
			for _, n := range []int{16, 5 << 20} {
				_, err = p.Read(t.Context(), 0, n)
				if hal.CodeOf(err) != c || err.Error() != fmt.Sprintf("read: the %v reason", c) {
					t.Errorf("read of %d bytes: error %q code %v, want code %v", n, err, hal.CodeOf(err), c)
				}
			}
		})
	}
}

func TestOpen_RefusesWrongSHA256(t *testing.T) {
	bad := sha256.Sum256([]byte("not the plugin"))
	_, err := plugin.Open(t.Context(), plugin.ClientConfig{
		Path:   os.Args[0],
		SHA256: bad[:],
		Env:    []string{helperEnv + "=full"},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil {
		t.Fatal("Open of a plugin with the wrong hash succeeded")
	}
	exe, rerr := os.ReadFile(os.Args[0])
	if rerr != nil {
		t.Fatal(rerr)
	}
	good := sha256.Sum256(exe)
	for _, want := range []string{os.Args[0], hex.EncodeToString(bad[:]), hex.EncodeToString(good[:]), "refusing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	// The right hash opens it.
	c := openPlugin(t, "full", plugin.ClientConfig{SHA256: good[:]})
	if _, err := c.Describe(t.Context()); err != nil {
		t.Errorf("Describe with the right hash: %v", err)
	}
}

func TestOpen_MissingFile(t *testing.T) {
	path := t.TempDir() + "/otaport-nope"
	_, err := plugin.Open(t.Context(), plugin.ClientConfig{Path: path})
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(%s) = %v, want a not-exist error naming the path", path, err)
	}
}

func TestPlugin_CrashGivesExitError(t *testing.T) {
	for _, mode := range []string{"doorbell", "stream", "inline"} {
		t.Run(mode, func(t *testing.T) {
			// The call timeout is far above what the crash takes: an
			// ExitError (not a deadline) proves the crash was noticed.
			c := openPlugin(t, "full", plugin.ClientConfig{CallTimeout: 30 * time.Second, NoSharedMemory: mode == "inline"})
			if mode == "stream" {
				plugin.WriteOverStream(c)
			}
			ctx := t.Context()
			if err := c.Write(ctx, 0, make([]byte, 64)); err != nil {
				t.Fatalf("first write: %v", err)
			}
			err := c.Write(ctx, 64, append(slices.Clone(magicCrash), make([]byte, 56)...))
			var xe *plugin.ExitError
			if !errors.As(err, &xe) {
				t.Fatalf("write during crash: %v, want an *plugin.ExitError", err)
			}
			if xe.State != "exit status 3" || !strings.Contains(xe.Output, "crashing on request") {
				t.Errorf("ExitError = %+v, want exit status 3 and the plugin's last words", xe)
			}
			if !strings.HasPrefix(err.Error(), "write at 0x40: port plugin ") {
				t.Errorf("error %q does not say which call and which plugin", err)
			}
			// The next call fails the same way, without waiting.
			if _, err := c.Describe(ctx); !errors.As(err, &xe) {
				t.Errorf("call after crash: %v, want an *plugin.ExitError", err)
			}
		})
	}
}

func TestPlugin_HangHitsDeadline(t *testing.T) {
	hang := append(slices.Clone(magicHang), make([]byte, 56)...)
	for _, mode := range []string{"doorbell", "stream", "inline"} {
		t.Run("CallTimeout/"+mode, func(t *testing.T) {
			hangCallTimeout(t, mode, hang)
		})
	}
	t.Run("ctx deadline", func(t *testing.T) {
		c := openPlugin(t, "full", plugin.ClientConfig{CallTimeout: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		err := c.Write(ctx, 0, hang)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hung write: %v, want context.DeadlineExceeded", err)
		}
		if _, err := c.Describe(t.Context()); err != nil {
			t.Errorf("Describe after a write timed out: %v", err)
		}
	})
}

func hangCallTimeout(t *testing.T, mode string, hang []byte) {
	c := openPlugin(t, "full", plugin.ClientConfig{CallTimeout: 300 * time.Millisecond, NoSharedMemory: mode == "inline"})
	if mode == "stream" {
		plugin.WriteOverStream(c)
	}
	ctx := t.Context()
	err := c.Write(ctx, 0, hang)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "CallTimeout") {
		t.Fatalf("hung write: %v, want a deadline error naming CallTimeout", err)
	}
	// The plugin is alive; the host recovers with a fresh stream (and
	// fresh shared memory, the hung write may still read the old one).
	data := pattern(2, 4096)
	if err := c.Write(ctx, 4096, data); err != nil {
		t.Fatalf("write after the hung one: %v", err)
	}
	got, err := c.Read(ctx, 4096, len(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back after recovery: %v (equal %v)", err, bytes.Equal(got, data))
	}
}

func TestPlugin_KVAndReboot(t *testing.T) {
	for _, conn := range connections() {
		if strings.HasPrefix(conn.name, "process-") {
			continue // the write path does not matter here
		}
		t.Run(conn.name, func(t *testing.T) {
			ctx := t.Context()
			p := conn.open(t)
			kv, ok := p.(hal.KV)
			if !ok {
				t.Fatal("client is not a hal.KV")
			}
			if _, ok, err := kv.Get(ctx, "state"); ok || err != nil {
				t.Fatalf("Get of an unset key: ok %v err %v", ok, err)
			}
			for _, v := range [][]byte{[]byte("downloading 1.2.0"), {}} {
				if err := kv.Set(ctx, "state", v); err != nil {
					t.Fatalf("Set(%q): %v", v, err)
				}
				got, ok, err := kv.Get(ctx, "state")
				if err != nil || !ok || !bytes.Equal(got, v) || got == nil {
					t.Fatalf("Get after Set(%q) = %q, %v, %v", v, got, ok, err)
				}
			}
			if err := kv.Set(ctx, "state", nil); err != nil {
				t.Fatalf("Set(nil): %v", err)
			}
			if _, ok, err := kv.Get(ctx, "state"); ok || err != nil {
				t.Fatalf("Get after delete: ok %v err %v, want not found", ok, err)
			}

			r, err := p.(hal.Rebooter).Reboot(ctx)
			if err != nil {
				t.Fatalf("Reboot: %v", err)
			}
			if want := (hal.RebootResult{Slot: "app", Version: "1.0.0+0", Action: "none", Detail: "1 keys"}); r != want {
				t.Errorf("Reboot = %+v, want %+v", r, want)
			}
			if err := p.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest}); err != nil {
				t.Fatal(err)
			}
			if r, err := p.(hal.Rebooter).Reboot(ctx); err != nil || r.Action != "trial" || r.Slot != "ota" {
				t.Errorf("Reboot after SetBoot(test) = %+v, %v", r, err)
			}
		})
	}
}

func TestPlugin_UnsupportedCapabilities(t *testing.T) {
	c := openPlugin(t, "minimal", plugin.ClientConfig{})
	ctx := t.Context()
	info, err := c.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Capabilities, []string{"extra"}) {
		t.Errorf("capabilities = %q, want only \"extra\" (the false kv claim removed)", info.Capabilities)
	}
	_, _, gerr := c.Get(ctx, "k")
	serr := c.Set(ctx, "k", []byte("v"))
	_, rerr := c.Reboot(ctx)
	_, sserr := c.ReadSlot(ctx, hal.PartApp, 0, 16)
	for name, err := range map[string]error{"Get": gerr, "Set": serr, "Reboot": rerr, "ReadSlot": sserr} {
		if !errors.Is(err, hal.ErrUnsupported) || hal.CodeOf(err) != hal.CodeUnsupported {
			t.Errorf("%s on a port without it: %v, want hal.ErrUnsupported", name, err)
		}
	}
}

// recorder is an slog handler that keeps records, for asserting on logs.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// failWords is what the "fail" helper says before it exits.
const failWords = "open test-board flash: open flash file /tmp/x.flash: the file is 1000 bytes but the board's flash is 65536 bytes"

// TestOpen_StartFailureLeadsWithThePluginsWords: a plugin that exits
// before serving is reported by what it said, on one line, not by
// go-plugin's boilerplate about architectures and handshakes, and without
// go-plugin's lifecycle warnings in the host's log (issue 9, item 7).
func TestOpen_StartFailureLeadsWithThePluginsWords(t *testing.T) {
	notPlugin := filepath.Join(t.TempDir(), "frob")
	if err := os.WriteFile(notPlugin, []byte("#!/bin/sh\necho 'usage: frob FILE' >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, env string
		lead, say       string
	}{
		{"a port that cannot start", os.Args[0], helperEnv + "=fail", filepath.Base(os.Args[0]) + ": " + failWords, "exit status 1"},
		{"not a plugin", notPlugin, "", "usage: frob FILE", "not an otaport port plugin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cl, err := plugin.Open(ctx, plugin.ClientConfig{Path: c.path, Env: []string{c.env}, Logger: slog.New(rec)})
			if err == nil {
				cl.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, c.lead) {
				t.Errorf("error does not lead with the plugin's words %q:\n%s", c.lead, msg)
			}
			if !strings.Contains(msg, c.say) || strings.Contains(msg, "\n") || strings.Contains(msg, "This usually means") {
				t.Errorf("error is not one line saying %q:\n%s", c.say, msg)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, r := range rec.records {
				if r.Level >= slog.LevelWarn {
					t.Errorf("host log has %v %q: the error says it all", r.Level, r.Message)
				}
			}
		})
	}
}

func TestPlugin_LogsReachHostSlog(t *testing.T) {
	rec := &recorder{}
	c := openPlugin(t, "full", plugin.ClientConfig{Logger: slog.New(rec)})
	if _, err := c.Describe(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Close waits for the plugin's stderr to be drained into the logger.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.records {
		if r.Message != "describe" {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		if r.Level != slog.LevelInfo || attrs["board"] != "test-board" || !strings.Contains(attrs["plugin"], "plugin.test") {
			t.Errorf("plugin log record: level %v attrs %v, want info with board=test-board and the plugin's name", r.Level, attrs)
		}
		return
	}
	var msgs []string
	for _, r := range rec.records {
		msgs = append(msgs, r.Message)
	}
	t.Errorf("the plugin's \"describe\" log line never reached the host logger; got %q", msgs)
}

func TestClose_KillsPlugin(t *testing.T) {
	c := openPlugin(t, "full", plugin.ClientConfig{})
	ctx := t.Context()
	v, ok, err := c.Get(ctx, "pid")
	if err != nil || !ok {
		t.Fatalf("Get pid: %v %v", ok, err)
	}
	pid, err := strconv.Atoi(string(v))
	if err != nil || pid == os.Getpid() {
		t.Fatalf("pid %q: %v (must be another process)", v, err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("plugin process %d not running before Close: %v", pid, err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("plugin process %d after Close: kill -0 = %v, want ESRCH", pid, err)
	}
	if _, err := c.Describe(ctx); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Describe after Close: %v, want a closed error", err)
	}
}
