package main

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/agent"
)

// command is one subcommand of otarun. Each lives in its own file and is
// added to the tree by newRoot.
type command struct {
	name  string
	args  string // the arguments in the usage line, after the name
	short string
	// flags registers the command's own flags on fs.
	flags func(fs *pflag.FlagSet)
	run   func(ctx context.Context, e *env, args []string) error
	// modules says whether the command takes --config and --module to
	// act on a module of device.yaml.
	modules moduleUse
}

// cobra returns c as a command of the tree, whose run gets the env of the
// invocation.
func (c command) cobra(o *options) *cobra.Command {
	use := c.name
	if c.args != "" {
		use += " " + c.args
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: c.short,
	}
	mf := &moduleFlags{}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := newEnv(cmd, o)
		if err := e.pickModule(mf, c.modules); err != nil {
			return err
		}
		return c.run(cmd.Context(), e, args)
	}
	if c.flags != nil {
		c.flags(cmd.Flags())
	}
	if c.modules != noModule {
		mf.register(cmd.Flags())
	}
	return cmd
}

// options are the flags every command understands; they may come before or
// after the command name.
type options struct {
	plugin       string
	pluginSHA256 string
	flash        string
	json         bool
	verbose      bool
}

// register adds the flags of o to fs. Their environment variables are read
// when a command runs (fromEnv), so that the help and docs/cli.md show the
// same defaults everywhere.
func (o *options) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.plugin, "plugin", "", "path of the port plugin (otaport-<board>); env OTARUN_PLUGIN")
	fs.StringVar(&o.pluginSHA256, "plugin-sha256", "", "refuse to run the plugin unless its SHA-256 is this hex value")
	fs.StringVar(&o.flash, "flash", "", "flash file of the emulated device (default ./<board>.flash; only provision creates one); env OTAPORT_FLASH")
	fs.BoolVar(&o.json, "json", false, "print JSON for scripts instead of text for people")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "log debug messages")
}

// fromEnv fills in what the command line left out from the environment.
func (o *options) fromEnv() {
	o.plugin = cmp.Or(o.plugin, os.Getenv("OTARUN_PLUGIN"))
	o.flash = cmp.Or(o.flash, os.Getenv("OTAPORT_FLASH"))
}

// env is what a command runs with: its options, its output streams and
// loggers.
type env struct {
	opts   *options
	stdout io.Writer
	stderr io.Writer
	// log is the command's logger: info, or debug with -v.
	log *slog.Logger
	// warn logs warnings only, for the engine that says what it does
	// through its observer; it is log with -v.
	warn *slog.Logger
	// flash is the absolute path of the flash file the plugin was given,
	// once a command has opened it.
	flash string
	// keys are the public keys of the module of --config, for a command
	// whose --key is not given.
	keys []string
	// encKey is the device's decryption key of the module of --config
	// (its enc_key), for a command whose --enc-key is not given.
	encKey string
	// shaField names where opts.pluginSHA256 was given, for its error.
	shaField string
	// modules are, for status --config of a device of several modules
	// without --module, every module, each to show on its own.
	modules []agent.ModuleConfig
	// flashOf is the module of device.yaml whose flash opts.flash is, if
	// it is one, for the fix of a missing flash.
	flashOf string
	// device is the device.yaml of --config, or nil.
	device *agent.Config
	// flags are the command's, parsed: what the command line set wins
	// over device.yaml.
	flags *pflag.FlagSet
}

func newEnv(cmd *cobra.Command, o *options) *env {
	level, warn := slog.LevelInfo, slog.LevelWarn
	if o.verbose {
		level, warn = slog.LevelDebug, slog.LevelDebug
	}
	return &env{
		opts:   o,
		stdout: cmd.OutOrStdout(),
		stderr: cmd.ErrOrStderr(),
		log:    cli.Logger(cmd, cmd.ErrOrStderr(), level),
		warn:   cli.Logger(cmd, cmd.ErrOrStderr(), warn),
		// Without --config, the flag is where the SHA-256 comes from.
		shaField: "--plugin-sha256",
		flags:    cmd.Flags(),
	}
}

func commands() []command {
	cmds := []command{
		infoCommand(),
		conformanceCommand(),
		agentCommand(),
		provisionCommand(),
	}
	return append(cmds, engineCommands()...)
}

const long = `otarun is the generic core of otaport on a device: it loads a port plugin (--plugin
bin/otaport-<board>) and runs the device agent, which takes upgrade orders from the cloud, or
one of the local commands. With no command, otarun runs the agent.`

// newRoot returns otarun's command tree. The root is the agent: "otarun
// --plugin P --config device.yaml" takes the agent's flags.
func newRoot() *cobra.Command {
	o := &options{}
	root := cli.NewRoot("otarun", "the device side of otaport: the agent, and local installs", long)
	root.Example = `  otarun --plugin bin/otaport-b-l475e-iot01a --config device.yaml
  otarun --plugin bin/otaport-b-l475e-iot01a install v2.img --key pub.pem
  otarun --plugin bin/otaport-b-l475e-iot01a status --json`
	o.register(root.PersistentFlags())
	root.PersistentPreRun = func(*cobra.Command, []string) { o.fromEnv() }
	af := &agentFlags{}
	af.register(root.Flags())
	// The agent takes no argument: any is a command, perhaps mistyped
	// ("otarun stauts"), never an argument of the agent.
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return cli.UnknownCommand(cmd, args[0])
		}
		return nil
	}
	cli.SetRun(root, func(cmd *cobra.Command, _ []string) error {
		if o.plugin == "" && cmd.Flags().NFlag() == 0 {
			return cli.Usagef("give a command, or --plugin bin/otaport-<board> to run the device agent")
		}
		return runAgent(cmd.Context(), newEnv(cmd, o), af)
	})
	for _, c := range commands() {
		root.AddCommand(c.cobra(o))
	}
	return root
}
