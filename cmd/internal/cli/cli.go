// Package cli is what the command lines of otagen, otarun, otaimg and
// otaserve share, so that the four follow one set of conventions, those of
// kubectl and gh (github.com/spf13/cobra): flags anywhere among the
// arguments, a mistyped command refused with a suggestion and never taken as
// an argument, one help style, --help exiting 0, shell completions,
// --version, --log-format for the logs, sizes read like board files read
// them, and the exit codes 0 (done), 1 (failed) and 2 (the command line is
// wrong). Each tool builds its own command tree; this package is not for
// what a tool does.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/core/size"
)

// Exit codes, the same for every tool (docs/cli.md).
const (
	ExitOK      = 0 // the command did what it was asked
	ExitFailure = 1 // it could not: the message says why
	ExitUsage   = 2 // the command line is wrong: the message says how, and where the help is
)

// ErrUsage marks an error in the command line rather than in the work: an
// unknown command or flag, a missing or extra argument, a value a flag does
// not take. errors.Is(err, ErrUsage) holds for the errors of Usage and
// Usagef.
var ErrUsage = errors.New("usage")

// usageError is an error in the command line; its message is the cause's
// alone.
type usageError struct{ err error }

func (e usageError) Error() string        { return e.err.Error() }
func (e usageError) Unwrap() error        { return e.err }
func (e usageError) Is(target error) bool { return target == ErrUsage }

// Usage marks err as a mistake in the command line (exit status 2).
func Usage(err error) error {
	if err == nil || errors.Is(err, ErrUsage) {
		return err
	}
	return usageError{err}
}

// Usagef is Usage of a formatted message.
func Usagef(format string, a ...any) error {
	return usageError{fmt.Errorf(format, a...)}
}

// ExitError ends a command with an exit status whose reason the command has
// already printed (a conformance run that printed its failures), or with 0
// once it has done all it had to (--version).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Version is the version of the running program from its build information:
// the module version `go install` stamps, or the pseudo-version of the
// commit `go build` stamps in a checkout; "(devel)" when there is none.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "(devel)"
	}
	return bi.Main.Version
}

// NewRoot returns the root command of a tool with the conventions set:
// errors printed once by Run, --version, --log-format, flag errors and
// unknown commands as usage errors. A tool whose root does something itself
// (otagen, otarun) sets its RunE and Args.
func NewRoot(name, short, long string) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         short,
		Long:          long,
		SilenceErrors: true, // Run prints them, once, with the command's name
		SilenceUsage:  true, // a failure is not a reason to print the help
		Args:          Subcommands,
		RunE:          needCommand,
		Annotations:   map[string]string{groupAnnotation: "true"},
	}
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	root.SetHelpCommand(helpCommand())
	f := logFormat("text")
	root.PersistentFlags().Var(&f, "log-format", "format of the log lines on standard error: text or json (one object per line, for log collectors)")
	// Not cobra's own --version, which answers before the arguments are
	// checked: "otaimg sgin --version 1.0.0" would print the version and
	// exit 0 instead of suggesting sign.
	version := root.Flags().Bool("version", false, "print the version of "+root.Name())
	root.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if !*version {
			return nil
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s version %s\n", cmd.Name(), Version())
		return ExitError{Code: ExitOK}
	}
	return root
}

// Group returns a command that only holds subcommands (otaserve device):
// without one, or with a name that is none of them, it is a usage error that
// lists them or suggests the nearest.
func Group(use, short string, cmds ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:         use,
		Short:       short,
		Args:        Subcommands,
		RunE:        needCommand,
		Annotations: map[string]string{groupAnnotation: "true"},
	}
	g.AddCommand(cmds...)
	return g
}

// SetRun makes root, which NewRoot made a group of commands, a command that
// runs run itself when no subcommand is named (otagen generates, otarun runs
// the agent).
func SetRun(root *cobra.Command, run func(cmd *cobra.Command, args []string) error) {
	root.RunE = run
	delete(root.Annotations, groupAnnotation)
}

// groupAnnotation marks a command that only groups others: its usage shows
// "TOOL [command]" alone, no usage line of its own.
const groupAnnotation = "otaport/group"

// usageTemplate is cobra's usage template, less the command groups otaport
// does not use, with no usage line of their own for groupAnnotation
// commands (cobra runs them, to refuse what names no subcommand).
const usageTemplate = `Usage:{{if and .Runnable (ne (index .Annotations "otaport/group") "true")}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Available Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`

// helpCommand is "TOOL help COMMAND": cobra's, except that a name that is
// no command is a usage error with a suggestion, as everywhere else, not
// the tool's help with exit status 0.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		ValidArgsFunction: func(c *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return commandNames(cmd), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil {
				return Usage(err)
			}
			if len(rest) > 0 {
				return UnknownCommand(cmd, rest[0])
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

// needCommand runs a command that only holds others: a command line that
// names none of them is a usage error. (Cobra would print the help and exit
// 0, and before that take an unknown name for an argument.)
func needCommand(c *cobra.Command, _ []string) error {
	return Usagef("give a command: %s", strings.Join(commandNames(c), ", "))
}

// Subcommands is the Args check of a command whose arguments are the names
// of its subcommands: an argument that names none of them is refused, with
// the nearest as a suggestion, and never passed on as an argument.
func Subcommands(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return UnknownCommand(cmd, args[0])
}

// UnknownCommand is the usage error for name, which is not a subcommand of
// cmd: it suggests the nearest (otarun stauts: did you mean status?), or
// lists the commands.
func UnknownCommand(cmd *cobra.Command, name string) error {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		return Usagef("%s; did you mean %s?", msg, strings.Join(s, " or "))
	}
	return Usagef("%s; the commands are: %s", msg, strings.Join(commandNames(cmd), ", "))
}

// IsCommand reports whether name is one of cmd's subcommands or their
// aliases, or close enough to one to be a typo of it.
func IsCommand(cmd *cobra.Command, name string) bool {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return true
		}
	}
	return len(cmd.SuggestionsFor(name)) > 0
}

// NoArgs is the Args check of a command that takes no argument.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef("unexpected argument %q", args[0])
	}
	return nil
}

// ExactArgs is the Args check of a command that takes n arguments, what
// they are ("the campaign ID") said when they are missing.
func ExactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) > n:
			return Usagef("unexpected argument %q", args[n])
		case len(args) < n:
			return Usagef("give %s", what)
		}
		return nil
	}
}

func commandNames(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return names
}

// Run runs the tool whose root is root with args and returns its exit
// status: 0, 1 after printing "PATH: error", or 2 after printing the usage
// error and where the help is. A command's own name leading its error
// ("rollback: nothing to roll back") is said once.
func Run(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ee ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if cmd == nil {
		cmd = root
	}
	path := cmd.CommandPath()
	fmt.Fprintf(stderr, "%s: %s\n", path, strings.TrimPrefix(err.Error(), cmd.Name()+": "))
	if errors.Is(err, ErrUsage) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
		return ExitUsage
	}
	return ExitFailure
}

// logFormat is the value of --log-format.
type logFormat string

func (f *logFormat) String() string { return string(*f) }
func (f *logFormat) Type() string   { return "text|json" }
func (f *logFormat) Set(s string) error {
	switch s {
	case "text", "json":
		*f = logFormat(s)
		return nil
	}
	return fmt.Errorf("want text or json, not %q", s)
}

// Logger returns the logger a command writes to w, in the format its
// --log-format asks for, from level up.
func Logger(cmd *cobra.Command, w io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if f := cmd.Flag("log-format"); f != nil && f.Value.String() == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Size is a flag value that is a byte count, read by size.Parse as board
// files are: 4096, 0x1000, 32KiB, 1.5MiB, 1TiB.
type Size struct {
	Bytes uint64
	Given bool // set on the command line
}

func (s *Size) String() string {
	if !s.Given && s.Bytes == 0 {
		return ""
	}
	return size.Format(s.Bytes)
}

func (s *Size) Type() string { return "size" }

func (s *Size) Set(v string) error {
	n, err := size.Parse(v)
	if err != nil {
		return err
	}
	s.Bytes, s.Given = n, true
	return nil
}
