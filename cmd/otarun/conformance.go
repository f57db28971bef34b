package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/conformance"
	"github.com/otaport/otaport/core/hal"
)

func conformanceCommand() command {
	return command{
		name:    "conformance",
		short:   "run the port conformance kit against the plugin, on a scratch flash file",
		modules: oneModule,
		run: func(ctx context.Context, e *env, args []string) error {
			if e.opts.plugin == "" {
				return cli.Usagef("no port plugin: pass --plugin bin/otaport-<board>")
			}
			// The kit erases and rewrites the flash: never the user's, always a
			// scratch file of its own that goes away afterwards.
			dir, err := os.MkdirTemp("", "otarun-conformance-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			flashFile := filepath.Join(dir, "scratch.flash")
			target := func(ctx context.Context) (hal.Platform, func() error, error) {
				c, err := openPlugin(ctx, e, flashFile)
				if err != nil {
					return nil, nil, err
				}
				return c, c.Close, nil
			}
			fmt.Fprintf(e.stdout, "conformance: %s (scratch flash in %s)\n", e.opts.plugin, dir)
			passed, failed := conformance.Run(ctx, target, e.stdout)
			fmt.Fprintf(e.stdout, "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return cli.ExitError{Code: 1}
			}
			return nil
		},
	}
}
