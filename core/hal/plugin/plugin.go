package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/otaport/otaport/core/hal"
	halpb "github.com/otaport/otaport/core/hal/plugin/proto"
)

// The handshake a host and a port plugin agree on before they talk. The
// magic cookie only keeps a plugin from being run by hand by mistake (it
// then says so and exits); it is not a security measure: SecureConfig and
// AutoMTLS are.
const (
	// ProtocolVersion is the version of the plugin service in
	// proto/hal.proto. Bump it on an incompatible change and keep serving
	// the old version beside the new one in the plugin set.
	ProtocolVersion = 1
	// MagicCookieKey is the environment variable the host sets for its goplugin.
	MagicCookieKey = "OTAPORT_PORT_PLUGIN"
	// MagicCookieValue is its value.
	MagicCookieValue = "9c1e5f0a7d3b4e2a8f6c1d0b5a4e3f2c"
)

// pluginName is the one plugin a port plugin process dispenses.
const pluginName = "platform"

// Handshake returns the go-plugin handshake of otaport's port plugins. It is
// a function, not a variable, so no package state can be changed by a caller.
func Handshake() goplugin.HandshakeConfig {
	return goplugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// PluginSets returns the versioned plugin sets, keyed by protocol version;
// impl is the port a plugin serves, nil on the host side.
func PluginSets(impl hal.Platform) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		ProtocolVersion: {pluginName: &platformPlugin{impl: impl}},
	}
}

// platformPlugin is the go-plugin binding of the Platform service.
type platformPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl hal.Platform
}

// GRPCServer registers the port's service on the plugin's gRPC server.
func (p *platformPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	halpb.RegisterPlatformServer(s, newGRPCServer(p.impl))
	return nil
}

// GRPCClient wraps the host's connection. go-plugin's ctx ends when the
// plugin process exits, which is how a Client learns of a crash.
func (p *platformPlugin) GRPCClient(ctx context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newClient(halpb.NewPlatformClient(conn), ctx.Done()), nil
}

// Sizes of the gRPC transport. The default 64 KiB flow-control window
// would stall every 64 KiB chunk on a window update; a large fixed window
// (which also turns off BDP probing) and large socket buffers let one write
// travel in one go.
const (
	grpcWindow = 16 << 20
	grpcBuffer = 256 << 10
	grpcMaxMsg = math.MaxInt32
)

func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(grpcMaxMsg),
		grpc.MaxSendMsgSize(grpcMaxMsg),
		grpc.InitialWindowSize(grpcWindow),
		grpc.InitialConnWindowSize(grpcWindow),
		grpc.ReadBufferSize(grpcBuffer),
		grpc.WriteBufferSize(grpcBuffer),
	}
}

func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcMaxMsg), grpc.MaxCallSendMsgSize(grpcMaxMsg)),
		grpc.WithInitialWindowSize(grpcWindow),
		grpc.WithInitialConnWindowSize(grpcWindow),
		grpc.WithReadBufferSize(grpcBuffer),
		grpc.WithWriteBufferSize(grpcBuffer),
	}
}

// Serve runs p as a port plugin and returns when the host is done with it.
// A port's main is this one call; KV and Rebooter are served when p
// implements them. Run by hand (not by a host), it says so and exits.
func Serve(p hal.Platform) {
	go watchParent(os.Getppid(), time.Second)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  Handshake(),
		VersionedPlugins: PluginSets(p),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, serverOptions()...)...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Level:      hclog.Debug,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
}

// watchParent ends the plugin when its host is gone: the process is then
// reparented, and its parent is no longer the one it started with. A port
// has no work of its own once nobody calls it, and an orphan would keep
// the flash from the next host (where the kernel has no parent-death
// signal, or it was lost with the host thread that set it).
func watchParent(parent int, every time.Duration) {
	if parent <= 1 {
		return // started by init or a subreaper itself: nothing to watch
	}
	for range time.Tick(every) {
		if os.Getppid() != parent {
			fmt.Fprintf(os.Stderr, "port plugin: host process %d is gone, exiting\n", parent)
			os.Exit(1)
		}
	}
}

// ClientConfig says which plugin to run and how far to trust and wait for it.
type ClientConfig struct {
	// Path is the plugin executable.
	Path string
	// SHA256, when set, is the expected SHA-256 of the executable: Open
	// refuses to run a file with another hash.
	SHA256 []byte
	// Logger receives the host side's and the plugin's logs; nil uses
	// slog.Default().
	Logger *slog.Logger
	// Env is added to the host's environment for the plugin (KEY=value).
	Env []string
	// CallTimeout bounds every call, on top of the caller's ctx deadline;
	// zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// NoSharedMemory sends write data inline in the gRPC stream instead of
	// through shared memory (for systems without it, and to measure both).
	NoSharedMemory bool
}

// ExitError is the error of every call once the plugin process has exited.
type ExitError struct {
	// Plugin is the executable's base name.
	Plugin string
	// State is how it ended ("exit status 2", "signal: killed").
	State string
	// Output is the last thing it wrote on stderr that explains the exit
	// (a panic line, a fatal log line), or "".
	Output string
}

func (e *ExitError) Error() string {
	s := fmt.Sprintf("port plugin %s exited (%s)", e.Plugin, e.State)
	if e.Output != "" {
		s += ": " + e.Output
	}
	return s
}

// PortGone reports that the port is gone, not that it refused: the caller's
// work is resumable once a new plugin runs. Consumers test for the method,
// not the type, so they need not import this package.
func (e *ExitError) PortGone() bool { return true }

// Open starts the port plugin at cfg.Path and connects to it over gRPC with
// mutual TLS (go-plugin's AutoMTLS, always on). The caller must Close the
// Client, which kills the process. ctx bounds the start.
func Open(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("open port plugin: ClientConfig.Path is empty: give the plugin executable")
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("open port plugin %s: %w", cfg.Path, err)
	}
	base := filepath.Base(path)
	var secure *goplugin.SecureConfig
	if len(cfg.SHA256) > 0 {
		if err := checkSHA256(path, cfg.SHA256); err != nil {
			return nil, err
		}
		// go-plugin checks again just before it starts the process.
		secure = &goplugin.SecureConfig{Checksum: cfg.SHA256, Hash: sha256.New()}
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open port plugin %s: %w (check ClientConfig.Path)", cfg.Path, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	timeout := cfg.CallTimeout
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	startTimeout := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		startTimeout = time.Until(dl)
	}

	cmd := exec.Command(path)
	// The host's environment first, cfg.Env after it so it wins.
	cmd.Env = append(os.Environ(), cfg.Env...)
	tieToHost(cmd)
	tail := &tailWriter{}
	starting := &atomic.Bool{}
	starting.Store(true)
	pc := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake(),
		VersionedPlugins: PluginSets(nil),
		Cmd:              cmd,
		SkipHostEnv:      true,
		SecureConfig:     secure,
		AutoMTLS:         true,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           newHCLogger(logger, starting),
		Stderr:           tail,
		// What the plugin writes to os.Stdout and os.Stderr while serving
		// (go-plugin forwards it over its stdio stream) is logged too.
		SyncStdout:      lineLogger(logger, base, "stdout"),
		SyncStderr:      io.MultiWriter(tail, lineLogger(logger, base, "stderr")),
		StartTimeout:    startTimeout,
		GRPCDialOptions: dialOptions(),
	})

	type dispensed struct {
		c   *Client
		err error
	}
	done := make(chan dispensed, 1)
	go func() {
		rpc, err := pc.Client()
		if err != nil {
			done <- dispensed{err: err}
			return
		}
		raw, err := rpc.Dispense(pluginName)
		if err != nil {
			done <- dispensed{err: err}
			return
		}
		done <- dispensed{c: raw.(*Client)}
	}()
	var d dispensed
	select {
	case d = <-done:
	case <-ctx.Done():
		pc.Kill()
		return nil, fmt.Errorf("start port plugin %s: %w", base, ctx.Err())
	}
	if d.err != nil {
		pc.Kill() // returns once the process is reaped and its stderr read
		return nil, startError(base, d.err, cmd, tail)
	}
	starting.Store(false)

	c := d.c
	c.name = "port plugin " + base
	c.callTimeout = timeout
	c.logger = logger
	c.noShm = cfg.NoSharedMemory
	c.closeFn = func() error { pc.Kill(); return nil }
	c.exitErr = func() error {
		// gone is closed after go-plugin reaped the process, so
		// ProcessState is set and stderr fully read.
		state := "exited"
		if cmd.ProcessState != nil {
			state = cmd.ProcessState.String()
		}
		return &ExitError{Plugin: base, State: state, Output: tail.last()}
	}
	return c, nil
}

// startError explains a plugin that did not start. When the process ended
// and said something, its words lead: they name what is wrong (a flash file
// of the wrong size, a directory), where go-plugin's own error is a page
// on architectures, libraries and handshakes that fits any failure.
func startError(base string, err error, cmd *exec.Cmd, tail *tailWriter) error {
	said := tail.last()
	if said == "" || cmd.ProcessState == nil {
		return fmt.Errorf("start port plugin %s: %w%s", base, err, tail.explain())
	}
	state := cmd.ProcessState.String()
	if strings.HasPrefix(said, base+":") {
		// A port's main names itself, as otagen generates it.
		return fmt.Errorf("%s (port plugin %s exited before serving: %s)", said, base, state)
	}
	return fmt.Errorf("%s (%s exited before the plugin handshake, %s: not an otaport port plugin, or one built for another protocol version)", said, base, state)
}

// checkSHA256 refuses a plugin file whose hash is not the expected one, in
// words that say which file, both hashes and what to do.
func checkSHA256(path string, want []byte) error {
	if len(want) != sha256.Size {
		return fmt.Errorf("open port plugin %s: ClientConfig.SHA256 has %d bytes, a SHA-256 has %d", path, len(want), sha256.Size)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open port plugin %s: %w (check ClientConfig.Path)", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hash port plugin %s: %w", path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("refusing port plugin %s: its SHA-256 is %s, expected %s: rebuild or reinstall the plugin, or update the expected hash if this build is trusted",
			path, hex.EncodeToString(got), hex.EncodeToString(want))
	}
	return nil
}

// tailWriter keeps the end of the plugin's stderr, to explain a crash.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 16 << 10

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

// last returns the line that best explains an exit: the panic or fatal
// error line if there is one, else the last non-empty line (for a JSON log
// line, its message).
func (t *tailWriter) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			return strings.TrimSpace(l)
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return logMessage(l)
		}
	}
	return ""
}

// explain is last as a suffix for a start error.
func (t *tailWriter) explain() string {
	if l := t.last(); l != "" {
		return " (plugin said: " + l + ")"
	}
	return ""
}
