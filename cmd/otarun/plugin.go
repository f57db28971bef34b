package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/hal/plugin"
)

// openPlugin starts the port plugin named by --plugin on the flash file
// flashFile (OTAPORT_FLASH in the plugin's environment, which the plugin
// reads through portkit.FromEnv) with extra environment variables, and
// returns its client.
func openPlugin(ctx context.Context, e *env, flashFile string, extraEnv ...string) (*plugin.Client, error) {
	if err := e.checkPlugin(); err != nil {
		return nil, err
	}
	return openPluginAt(ctx, e, e.opts.plugin, e.opts.pluginSHA256, e.shaField, flashFile, extraEnv...)
}

// openPluginAt starts the plugin at path, which must have the SHA-256 sha
// if that is set (shaField says where sha was given, for the error).
func openPluginAt(ctx context.Context, e *env, path, sha, shaField, flashFile string, extraEnv ...string) (*plugin.Client, error) {
	cfg := plugin.ClientConfig{
		Path:   path,
		Logger: e.log,
		Env:    append([]string{"OTAPORT_FLASH=" + flashFile}, extraEnv...),
	}
	if s := strings.TrimSpace(sha); s != "" {
		sum, err := hex.DecodeString(strings.TrimPrefix(s, "sha256:"))
		if err != nil || len(sum) != 32 {
			return nil, cli.Usagef("%s %q: want 64 hex digits (sha256sum of the plugin file)", shaField, s)
		}
		cfg.SHA256 = sum
	}
	// Open's errors name the plugin (or lead with its own words): no
	// second prefix here.
	return plugin.Open(ctx, cfg)
}

// checkPlugin refuses a missing --plugin or a plugin file that is not there.
func (e *env) checkPlugin() error {
	if e.opts.plugin == "" {
		return cli.Usagef("no port plugin: pass --plugin bin/otaport-<board> (build one with: go build -o bin/ ./ports/...)")
	}
	if _, err := os.Stat(e.opts.plugin); err != nil {
		return fmt.Errorf("port plugin %s: %w (build it with: go build -o bin/ ./ports/...)", e.opts.plugin, err)
	}
	return nil
}
