package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/portgen"
)

// newRoot returns otagen's command tree: the root generates, validate and
// list only read.
func newRoot() *cobra.Command {
	root := cli.NewRoot("otagen FILE.yaml", "validate board descriptions and generate their ports",
		"otagen validates a board description (one board, or a catalog under boards:) and generates\n"+
			"its port into DIR/<board>/ (DIR defaults to ports), with the registry of the ports in DIR/all.\n"+
			"Everything is generated in memory before anything is written, so an invalid file leaves the\n"+
			"output untouched. With --module, one board is generated as its own Go module in DIR (default .).")
	root.Example = `  otagen boards.yaml
  otagen boards.yaml --board stm32f407-disco
  otagen --module example.com/you/otaport-myboard -o otaport-myboard myboard.yaml`
	var f generateFlags
	fs := root.Flags()
	fs.StringVarP(&f.root, "output", "o", "", "output `dir`ectory: the root of the ports (default ports), or of the module (default .)")
	fs.StringVar(&f.only, "board", "", "generate only the board `name`d")
	fs.StringVar(&f.module, "module", "", "generate the board as its own Go module with this `path`, outside otaport's repository")
	fs.StringVar(&f.replace, "replace", "", "with --module: build against the otaport checkout in `dir` (a replace directive in go.mod)")
	fs.BoolVar(&f.force, "force", false, "overwrite the port of another board with the same name")
	root.Args = fileOrCommand
	cli.SetRun(root, func(cmd *cobra.Command, args []string) error {
		return generate(args, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
	})
	root.AddCommand(validateCommand(), listCommand())
	return root
}

// fileOrCommand refuses a first argument that is no file but is, or nearly
// is, the name of a command: "otagen valdate x.yaml" is a typo of validate,
// not a board file called valdate.
func fileOrCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if _, err := os.Stat(args[0]); err != nil && cli.IsCommand(cmd, args[0]) {
		return cli.UnknownCommand(cmd, args[0])
	}
	return nil
}

// oneFile returns the single FILE argument.
func oneFile(pos []string) (string, error) {
	if len(pos) != 1 {
		return "", cli.Usagef("want one board file, got %d arguments", len(pos))
	}
	return pos[0], nil
}

func validateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE.yaml",
		Short: "check a board file, generate nothing",
		RunE: func(cmd *cobra.Command, args []string) error {
			return validate(args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}

func validate(args []string, stdout, stderr io.Writer) error {
	file, boards, err := loadBoards(args)
	if err != nil {
		return err
	}
	warnEmulator(stderr, file, boards)
	fmt.Fprintf(stdout, "ok: %d boards\n", len(boards))
	return nil
}

// warnEmulator says which valid boards the flash emulator cannot hold: their
// ports build and run on hardware, but not under otarun or the conformance
// kit over an emulated flash.
func warnEmulator(w io.Writer, file string, boards []*portgen.Board) {
	for _, b := range boards {
		if err := flash.CheckLimits(b.Layout().Flash); err != nil {
			fmt.Fprintf(w, "otagen: warning: %s:%d: board %s is valid, but the flash emulator cannot run it (otarun, conformance over an emulated flash): %v\n", file, b.Line, b.Name, err)
		}
	}
}

// loadBoards reads and validates the one board file the arguments name,
// which it returns with the boards.
func loadBoards(args []string) (file string, boards []*portgen.Board, err error) {
	file, err = oneFile(args)
	if err != nil {
		return "", nil, err
	}
	boards, err = portgen.ParseFile(file)
	if err != nil {
		return "", nil, invalid(err)
	}
	return file, boards, nil
}

// maxShown is the most problems printed: past it the first ones are what to
// fix, and the rest often follow from them.
const maxShown = 50

// invalid presents the parser's problems one per line under a heading, the
// first maxShown of them, and says how many more were left out.
func invalid(err error) error {
	var problems portgen.Errors
	if !errors.As(err, &problems) || len(problems) <= 1 {
		return err
	}
	if len(problems) <= maxShown {
		return fmt.Errorf("%d problems:\n%w", len(problems), err)
	}
	return fmt.Errorf("%d problems:\n%w\n%d more problems not shown; fix these first", len(problems), problems[:maxShown], len(problems)-maxShown)
}

// listEntry is one board in `otagen list --json`.
type listEntry struct {
	Name   string      `json:"name"`
	Layout *hal.Layout `json:"layout,omitempty"`
	Source string      `json:"source,omitempty"`
	Module string      `json:"module,omitempty"` // a port in its own module
}

func listCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--json] FILE.yaml",
		Short: "print the boards of a catalog",
	}
	asJSON := cmd.Flags().Bool("json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return list(args, *asJSON, cmd.OutOrStdout()) }
	return cmd
}

func list(args []string, asJSON bool, stdout io.Writer) error {
	_, boards, err := loadBoards(args)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]listEntry, 0, len(boards))
		for _, b := range boards {
			if b.OutOfTree() {
				out = append(out, listEntry{Name: b.Name, Module: b.Module})
				continue
			}
			l := b.Layout()
			out = append(out, listEntry{Name: b.Name, Layout: &l, Source: b.Source})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOC\tFLASH\tSCHEME\tPARTITIONS")
	for _, b := range boards {
		if b.OutOfTree() {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tin its own module: %s\n", b.Name, b.Module)
			continue
		}
		l := b.Layout()
		parts := make([]string, 0, len(l.Partitions))
		for _, p := range l.Partitions {
			parts = append(parts, p.Name+" "+humanSize(p.Size))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, b.SoC, humanSize(l.Flash.Size), l.Scheme, strings.Join(parts, ", "))
	}
	return tw.Flush()
}

func humanSize(n uint64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d", n)
}

// generateFlags are the flags of otagen's root command, which generates.
type generateFlags struct {
	root, only, module, replace string
	force                       bool
}

func generate(args []string, f generateFlags, stdout, stderr io.Writer) error {
	file, boards, err := loadBoards(args)
	if err != nil {
		return err
	}
	if f.only != "" {
		boards, err = pick(boards, f.only, file)
		if err != nil {
			return err
		}
	}
	if f.module != "" {
		return generateModule(stdout, file, boards, f.module, f.replace, f.root)
	}
	if f.replace != "" {
		return cli.Usagef("--replace goes with --module")
	}
	if f.root == "" {
		f.root = "ports"
	}

	if !f.force {
		for _, b := range boards {
			if err := portgen.CheckPortDir(filepath.Join(f.root, b.Name), b); err != nil {
				return fmt.Errorf("%s: board %s: %w", file, b.Name, err)
			}
		}
	}
	warnEmulator(stderr, file, boards)

	// Everything in memory first: a board that fails leaves no output.
	files, err := portgen.GenerateShared()
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, b := range boards {
		if b.OutOfTree() {
			continue // generated in its own module, by its author
		}
		port, err := portgen.GeneratePort(b)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		files = append(files, port...)
		names[b.Name] = true
	}
	// The registry lists every port under the root, not only those of this
	// run, so generating one board never drops the others from it.
	existing, err := portgen.PortDirs(f.root)
	if err != nil {
		return err
	}
	for _, n := range existing {
		names[n] = true
	}
	all := make([]string, 0, len(names))
	for n := range names {
		all = append(all, n)
	}
	sort.Strings(all)
	reg, err := portgen.GenerateRegistry(all)
	if err != nil {
		return err
	}
	files = append(files, reg)

	res, err := portgen.WriteFiles(f.root, files)
	if err != nil {
		return err
	}
	report(stdout, f.root, boards, res, len(all))
	return nil
}

// generateModule writes the one board of boards as the Go module path in
// root (default: the current directory).
func generateModule(stdout io.Writer, file string, boards []*portgen.Board, path, replace, root string) error {
	if len(boards) != 1 {
		return cli.Usagef("--module makes one port, and %s has %d boards; pick one with --board", file, len(boards))
	}
	if root == "" {
		root = "."
	}
	if replace != "" {
		abs, err := filepath.Abs(replace)
		if err != nil {
			return err
		}
		replace = abs
	}
	b := boards[0]
	if b.OutOfTree() {
		return fmt.Errorf("%s: %s is a catalog entry for the module %s; run otagen --module on the module's own board.yaml", file, b.Name, b.Module)
	}
	out, err := portgen.GenerateModule(b, portgen.Module{Path: path, Otaport: portgen.OtaportVersion(), Replace: replace})
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	res, err := portgen.WriteFiles(root, out)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s: module %s: wrote %s", root, path, files(len(res.Written)))
	if u := len(res.Unchanged); u > 0 {
		line += fmt.Sprintf(", %d unchanged", u)
	}
	if len(res.Kept) > 0 {
		line += ", kept " + strings.Join(res.Kept, ", ")
	}
	fmt.Fprintln(stdout, line)
	return nil
}

// pick returns the board called name, or an error that lists the names.
func pick(boards []*portgen.Board, name, file string) ([]*portgen.Board, error) {
	var known []string
	for _, b := range boards {
		if b.Name == name {
			return []*portgen.Board{b}, nil
		}
		known = append(known, b.Name)
	}
	return nil, fmt.Errorf("%s: no board %q; the file has: %s", file, name, strings.Join(known, ", "))
}

// report prints one progress line per board and one for the registry.
func report(w io.Writer, root string, boards []*portgen.Board, res portgen.WriteResult, ports int) {
	count := func(paths []string) map[string][]string {
		m := map[string][]string{}
		for _, p := range paths {
			dir, rest, _ := strings.Cut(p, "/")
			m[dir] = append(m[dir], rest)
		}
		return m
	}
	written, unchanged, kept := count(res.Written), count(res.Unchanged), count(res.Kept)
	for _, b := range boards {
		if b.OutOfTree() {
			fmt.Fprintf(w, "%s: in its own module %s, not generated here\n", b.Name, b.Module)
			continue
		}
		dir := filepath.Join(root, b.Name)
		switch n := len(written[b.Name]); {
		case n == 0:
			fmt.Fprintf(w, "%s: up to date (%s)\n", dir, files(len(unchanged[b.Name])+len(kept[b.Name])))
		default:
			line := fmt.Sprintf("%s: wrote %s", dir, files(n))
			if u := len(unchanged[b.Name]); u > 0 {
				line += fmt.Sprintf(", %d unchanged", u)
			}
			if k := kept[b.Name]; len(k) > 0 {
				line += ", kept " + strings.Join(k, ", ")
			}
			fmt.Fprintln(w, line)
		}
	}
	state := "up to date"
	if len(written[portgen.RegistryDir]) > 0 {
		state = "written"
	}
	unit := "ports"
	if ports == 1 {
		unit = "port"
	}
	fmt.Fprintf(w, "%s: registry %s (%d %s)\n", filepath.Join(root, portgen.RegistryDir), state, ports, unit)
}

func files(n int) string {
	if n == 1 {
		return "1 file"
	}
	return fmt.Sprintf("%d files", n)
}
