package plugin

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	hclog "github.com/hashicorp/go-hclog"
)

// levelTrace is hclog's Trace in slog's scale (below Debug).
const levelTrace = slog.LevelDebug - 4

// hcLogger lets go-plugin, which logs through hclog, log into the host's
// slog: its own lifecycle messages and every line the plugin writes on
// stderr (which go-plugin parses and replays at the plugin's level).
type hcLogger struct {
	l    *slog.Logger
	name string
	args []any
	// starting, while set, turns go-plugin's own messages into debug
	// ones: a start that fails is reported by Open's error, in the
	// plugin's words, and go-plugin's "plugin process exited" and
	// "failed to exit gracefully" before it would only bury them.
	starting *atomic.Bool
}

func newHCLogger(l *slog.Logger, starting *atomic.Bool) hclog.Logger {
	return &hcLogger{l: l, starting: starting}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := slogLevel(level)
	// go-plugin announces every normal plugin exit at Info; for otaport a
	// plugin exit after Close is routine, and an abnormal one reaches the
	// caller as an ExitError, so the announcement is only debugging detail.
	if lv == slog.LevelInfo && msg == "plugin process exited" {
		lv = slog.LevelDebug
	}
	if h.name == "" && h.starting != nil && h.starting.Load() {
		lv = min(lv, slog.LevelDebug)
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, lv) {
		return
	}
	if h.name != "" {
		args = append([]any{"plugin", h.name}, args...)
	}
	h.l.Log(ctx, lv, msg, append(h.args[:len(h.args):len(h.args)], args...)...)
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) enabled(lv slog.Level) bool { return h.l.Enabled(context.Background(), lv) }
func (h *hcLogger) IsTrace() bool              { return h.enabled(levelTrace) }
func (h *hcLogger) IsDebug() bool              { return h.enabled(slog.LevelDebug) }
func (h *hcLogger) IsInfo() bool               { return h.enabled(slog.LevelInfo) }
func (h *hcLogger) IsWarn() bool               { return h.enabled(slog.LevelWarn) }
func (h *hcLogger) IsError() bool              { return h.enabled(slog.LevelError) }
func (h *hcLogger) ImpliedArgs() []any         { return h.args }
func (h *hcLogger) Name() string               { return h.name }

func (h *hcLogger) With(args ...any) hclog.Logger {
	return &hcLogger{l: h.l, name: h.name, args: append(h.args[:len(h.args):len(h.args)], args...), starting: h.starting}
}

func (h *hcLogger) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return &hcLogger{l: h.l, name: name, args: h.args}
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	return &hcLogger{l: h.l, name: name, args: h.args}
}

// SetLevel is a no-op: the level is the slog handler's to decide.
func (h *hcLogger) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the slog handler takes, so go-plugin
// skips parsing plugin lines that would be dropped anyway.
func (h *hcLogger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(slogLevel(lv)) {
			return lv
		}
	}
	return hclog.Off
}

func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.Info(string(trimNewline(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

// PluginLogger returns the logger a port plugin should log with: slog
// records written on stderr as the JSON lines go-plugin's host side parses,
// so that they reach the host's slog at their level with their attributes.
// A port's main passes it to its platform before calling Serve.
func PluginLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				return slog.String("@level", hclogLevel(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}

func hclogLevel(lv slog.Level) string {
	switch {
	case lv < slog.LevelDebug:
		return "trace"
	case lv < slog.LevelInfo:
		return "debug"
	case lv < slog.LevelWarn:
		return "info"
	case lv < slog.LevelError:
		return "warn"
	}
	return "error"
}

// logMessage returns the message of a JSON log line, or the line itself.
func logMessage(line string) string {
	var entry struct {
		Message string `json:"@message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal([]byte(line), &entry) != nil || entry.Message == "" {
		return line
	}
	if entry.Error != "" {
		return entry.Message + ": " + entry.Error
	}
	return entry.Message
}

// lineLogger logs each line written to it at Info, for a plugin's plain
// stdout and stderr output.
func lineLogger(l *slog.Logger, plugin, stream string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		for _, line := range strings.Split(string(trimNewline(p)), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				l.Info(line, "plugin", plugin, "stream", stream)
			}
		}
		return len(p), nil
	})
}
