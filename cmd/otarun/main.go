// Command otarun is the generic core of otaport on a device: it loads a port
// plugin and runs the upgrade agent, or one of the local subcommands (info,
// conformance, install, boot, status, confirm).
//
//	otarun --plugin bin/otaport-<board> [command] [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of otarun. Each lives in its own file and adds
// itself to the table returned by commands.
type command struct {
	name  string
	short string
	// flags registers the command's own flags on fs.
	flags func(fs *flag.FlagSet, o *options)
	run   func(ctx context.Context, env *env, args []string) error
}

// options are the flags every command understands; they may come before or
// after the command name.
type options struct {
	plugin       string
	pluginSHA256 string
	flash        string
	json         bool
	verbose      bool
	cmd          map[string]any // command-specific values, set by command.flags
}

// env is what a command runs with: its options, its output streams and a
// logger.
type env struct {
	opts   *options
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	// flash is the absolute path of the flash file the plugin was given,
	// once a command has opened it.
	flash string
}

func commands() []command {
	cmds := []command{
		infoCommand(),
		conformanceCommand(),
		agentCommand(),
		provisionCommand(),
	}
	cmds = append(cmds, engineCommands()...)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

// errUsage marks an error caused by how otarun was called (exit status 2).
var errUsage = errors.New("usage")

// exitError carries an exit status other than 1 (for example a failed
// conformance run that has already printed its report).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func globalFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.plugin, "plugin", os.Getenv("OTARUN_PLUGIN"), "path of the port plugin (otaport-<board>); env OTARUN_PLUGIN")
	fs.StringVar(&o.pluginSHA256, "plugin-sha256", "", "refuse to run the plugin unless its SHA-256 is this hex value")
	fs.StringVar(&o.flash, "flash", os.Getenv("OTAPORT_FLASH"), "flash file of the emulated device (default ./<board>.flash; only provision creates one); env OTAPORT_FLASH")
	fs.BoolVar(&o.json, "json", false, "print JSON for scripts instead of text for people")
	fs.BoolVar(&o.verbose, "v", false, "log debug messages")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := &options{cmd: map[string]any{}}
	cmds := commands()

	// With no command name, otarun is the agent: `otarun --plugin P --config
	// device.yaml` must take the agent's flags too, so the command goes in
	// front before any flag is parsed.
	if len(args) > 0 && !namesCommand(args, cmds) && !asksHelp(args) {
		args = append([]string{"agent"}, args...)
	}

	// Global flags before the command name.
	gfs := flag.NewFlagSet("otarun", flag.ContinueOnError)
	gfs.SetOutput(stderr)
	globalFlags(gfs, o)
	gfs.Usage = func() { usage(stderr, gfs, cmds) }
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := gfs.Args()
	if len(rest) == 0 {
		if o.plugin == "" {
			usage(stderr, gfs, cmds)
			return 2
		}
		rest = []string{"agent"}
	}
	name := rest[0]
	var cmd *command
	for i := range cmds {
		if cmds[i].name == name {
			cmd = &cmds[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "otarun: unknown command %q\n", name)
		usage(stderr, gfs, cmds)
		return 2
	}

	// The command's flags, with the global ones again so they may follow it.
	// Keep what was given before the command name: registering the flags
	// again resets their variables to the defaults.
	given := map[string]string{}
	gfs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	fs := flag.NewFlagSet("otarun "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	globalFlags(fs, o)
	for k, v := range given {
		_ = fs.Set(k, v)
	}
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	if err := fs.Parse(rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}

	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	e := &env{
		opts:   o,
		stdout: stdout,
		stderr: stderr,
		log:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	err := cmd.run(ctx, e, fs.Args())
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// The engine names its operation as the command is named
	// ("rollback: ..."): say it once.
	fmt.Fprintf(stderr, "otarun %s: %s\n", name, strings.TrimPrefix(err.Error(), name+": "))
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

func usage(w io.Writer, fs *flag.FlagSet, cmds []command) {
	fmt.Fprintf(w, "usage: otarun --plugin PATH [command] [flags]\n\n")
	fmt.Fprintf(w, "With no command, otarun runs the device agent.\n\ncommands:\n")
	var b strings.Builder
	for _, c := range cmds {
		if c.short == "" {
			continue
		}
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.short)
	}
	fmt.Fprint(w, b.String())
	fmt.Fprintf(w, "\nflags:\n")
	fs.PrintDefaults()
}

// namesCommand reports whether one of args is the name of a command.
func namesCommand(args []string, cmds []command) bool {
	for _, a := range args {
		for _, c := range cmds {
			if a == c.name {
				return true
			}
		}
	}
	return false
}

// asksHelp reports whether args ask for otarun's own usage.
func asksHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}
