// Command otagen validates board descriptions and generates the ports of
// otaport from them.
//
//	otagen [-o DIR] [--board NAME] FILE.yaml   generate ports/<name>/ for each board
//	otagen --module PATH [-o DIR] [--replace DIR] [--board NAME] FILE.yaml
//	                                           generate one board as its own Go module in DIR
//	otagen validate FILE.yaml                  check the file only
//	otagen list [--json] FILE.yaml             print the catalog
//
// Everything is generated in memory before anything is written, so an
// invalid file leaves the output untouched. The work is in package portgen;
// this is flags and messages.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/portgen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  otagen [-o DIR] [--board NAME] FILE.yaml   validate and generate DIR/<board>/ (DIR defaults to ports)
  otagen --module PATH [-o DIR] [--replace DIR] [--board NAME] FILE.yaml
                                             generate one board as the Go module PATH in DIR (default .)
  otagen validate FILE.yaml                  validate only
  otagen list [--json] FILE.yaml             print the boards of a catalog
`

// errUsage is a command line that makes no sense; the usage is printed.
var errUsage = errors.New("usage")

// run is otagen with its arguments and streams; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var err error
	switch {
	case len(args) > 0 && args[0] == "validate":
		err = validate(args[1:], stdout)
	case len(args) > 0 && args[0] == "list":
		err = list(args[1:], stdout)
	case len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = generate(args, stdout)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "otagen: %v\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "otagen: %v\n", err)
		return 1
	}
}

// parseArgs parses flags wherever they are among the arguments
// ("otagen boards.yaml --board x" as well as "otagen --board x boards.yaml").
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// oneFile returns the single FILE argument.
func oneFile(pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("%w: want one board file, got %d arguments", errUsage, len(pos))
	}
	return pos[0], nil
}

func validate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	_, boards, err := loadBoards(fs, args)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ok: %d boards\n", len(boards))
	return nil
}

// loadBoards parses the command's flags and reads and validates the one
// board file its arguments name, which it returns with the boards.
func loadBoards(fs *flag.FlagSet, args []string) (file string, boards []*portgen.Board, err error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", nil, err
	}
	file, err = oneFile(pos)
	if err != nil {
		return "", nil, err
	}
	boards, err = portgen.ParseFile(file)
	if err != nil {
		return "", nil, invalid(err)
	}
	return file, boards, nil
}

// invalid presents the parser's problems one per line under a heading.
func invalid(err error) error {
	var problems portgen.Errors
	if errors.As(err, &problems) && len(problems) > 1 {
		return fmt.Errorf("%d problems:\n%w", len(problems), err)
	}
	return err
}

// listEntry is one board in `otagen list --json`.
type listEntry struct {
	Name   string      `json:"name"`
	Layout *hal.Layout `json:"layout,omitempty"`
	Source string      `json:"source,omitempty"`
	Module string      `json:"module,omitempty"` // a port in its own module
}

func list(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	_, boards, err := loadBoards(fs, args)
	if err != nil {
		return err
	}
	if *asJSON {
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

func generate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("otagen", flag.ContinueOnError)
	root := fs.String("o", "", "output `dir`ectory: the root of the ports (default ports), or of the module (default .)")
	only := fs.String("board", "", "generate only the board `name`d")
	module := fs.String("module", "", "generate the board as its own Go module with this `path`, outside otaport's repository")
	replace := fs.String("replace", "", "with --module: build against the otaport checkout in `dir` (a replace directive in go.mod)")
	file, boards, err := loadBoards(fs, args)
	if err != nil {
		return err
	}
	if *only != "" {
		boards, err = pick(boards, *only, file)
		if err != nil {
			return err
		}
	}
	if *module != "" {
		return generateModule(stdout, file, boards, *module, *replace, *root)
	}
	if *replace != "" {
		return fmt.Errorf("%w: --replace goes with --module", errUsage)
	}
	if *root == "" {
		*root = "ports"
	}

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
	existing, err := portgen.PortDirs(*root)
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

	res, err := portgen.WriteFiles(*root, files)
	if err != nil {
		return err
	}
	report(stdout, *root, boards, res, len(all))
	return nil
}

// generateModule writes the one board of boards as the Go module path in
// root (default: the current directory).
func generateModule(stdout io.Writer, file string, boards []*portgen.Board, path, replace, root string) error {
	if len(boards) != 1 {
		return fmt.Errorf("%w: --module makes one port, and %s has %d boards; pick one with --board", errUsage, file, len(boards))
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
