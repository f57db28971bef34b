package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/hal/plugin"
)

// moduleUse is what a command does with --config and --module.
type moduleUse int

const (
	// noModule: the command takes neither flag.
	noModule moduleUse = iota
	// oneModule: the command acts on one module of device.yaml.
	oneModule
	// everyModule: the command acts on one module given --module, and on
	// each module of a device of several without it (status).
	everyModule
)

// moduleFlags pick a module of device.yaml for a local command, so that
// the user need not repeat its plugin, flash and keys by hand.
type moduleFlags struct {
	config string
	module string
}

func (f *moduleFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "device configuration `file` (device.yaml): take the plugin, plugin_sha256, flash and public_keys of a module from it (--plugin, --flash, --key still win)")
	fs.StringVar(&f.module, "module", "", "the `name` of the module of --config to act on (default: the only one, or default; status without it shows every module)")
}

// pickModule reads --config and sets e up for the module --module names: its
// plugin, plugin SHA-256 and flash where the command line does not give
// them (the environment gives way to device.yaml, which was asked for on
// the command line), and its keys. For status on a device of several
// modules without --module, it sets e.modules to all of them instead.
func (e *env) pickModule(f *moduleFlags, use moduleUse) error {
	if use == noModule {
		return nil
	}
	if f.config == "" {
		if f.module != "" {
			return cli.Usagef("--module %s: give the device.yaml that lists the device's modules with --config FILE", f.module)
		}
		return nil
	}
	cfg, err := agent.LoadConfig(f.config)
	if err != nil {
		return err
	}
	if err := cfg.CheckModules(); err != nil {
		return cli.Usage(err)
	}
	e.device = &cfg
	fs := e.flags
	if use == everyModule && f.module == "" && len(cfg.Modules) > 1 {
		if fs.Changed("plugin") || fs.Changed("flash") || fs.Changed("plugin-sha256") {
			return cli.Usagef("%s lists modules, each with its own plugin and flash: give --module NAME with --plugin, --plugin-sha256 or --flash", cfg.File())
		}
		e.modules = cfg.ModuleList()
		return nil
	}
	m, i, err := cfg.PickModule(f.module)
	if err != nil {
		return cli.Usage(err)
	}
	e.useModule(m, i)
	return nil
}

// useModule takes the plugin, plugin SHA-256, flash and keys of module m,
// modules[i] of e.device (i < 0: a device.yaml without modules), where the
// command line does not set them.
func (e *env) useModule(m agent.ModuleConfig, i int) {
	fs := e.flags
	if !fs.Changed("plugin") && m.Plugin != "" {
		e.opts.plugin = m.Plugin
		// The module's SHA-256 is of the module's plugin: not for one
		// given on the command line.
		if !fs.Changed("plugin-sha256") {
			e.opts.pluginSHA256 = m.PluginSHA256
			e.shaField = fmt.Sprintf("%s: modules[%d].plugin_sha256", e.device.File(), i)
		}
	}
	if !fs.Changed("flash") && m.Flash != "" {
		e.opts.flash = m.Flash
		e.flashOf = m.Name
	}
	e.keys, e.encKey = m.PublicKeys, m.EncKey
}

// moduleStatus is one module's status in status --json of every module.
type moduleStatus struct {
	Flash string `json:"flash,omitempty"`
	*engine.Status
	// Error is why the module's status could not be read.
	Error string `json:"error,omitempty"`
}

// statusModules prints the status of each module of e.modules: a row each,
// or with --json an object keyed by module. A module whose status cannot be
// read (its flash not made yet) is shown with its error, and the others
// still are; the command then fails.
func statusModules(ctx context.Context, e *env) error {
	all := map[string]moduleStatus{}
	var errs []error
	for i, m := range e.modules {
		sub := *e
		opts := *e.opts
		sub.opts = &opts
		sub.useModule(m, i)
		err := withEngine(ctx, &sub, "status", engine.Options{}, func(_ *plugin.Client, eng *engine.Engine) error {
			st, err := eng.Status(ctx)
			if err != nil {
				return err
			}
			all[m.Name] = moduleStatus{Flash: sub.flash, Status: &st}
			return nil
		})
		if err != nil {
			all[m.Name] = moduleStatus{Flash: cmp.Or(sub.flash, m.Flash), Error: err.Error()}
			errs = append(errs, fmt.Errorf("module %s: %w", m.Name, err))
		}
	}
	if e.opts.json {
		if err := writeJSON(e.stdout, all); err != nil {
			return err
		}
	} else {
		printModules(e.stdout, e.modules, all)
	}
	return errors.Join(errs...)
}

// printModules prints a row per module, in device.yaml's order.
func printModules(w io.Writer, mods []agent.ModuleConfig, all map[string]moduleStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODULE\tBOARD\tRUNNING\tSTATE\tFLASH")
	for _, m := range mods {
		ms := all[m.Name]
		if ms.Status == nil {
			fmt.Fprintf(tw, "%s\t-\t-\terror\t%s\n", m.Name, ms.Flash)
			continue
		}
		st := ms.Status
		run := st.RunningSlot + " " + st.RunningVersion
		if st.RunningVersion == "" {
			run = "none"
		}
		if st.Trial {
			run += " (trial)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, st.Board, run, st.State, ms.Flash)
	}
	tw.Flush()
}
