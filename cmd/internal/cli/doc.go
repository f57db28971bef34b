package cli

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Reference writes the reference of a tool for docs/cli.md: one section per
// command, with its description and its usage as --help prints it, in the
// order of the tree, so the page and the help cannot disagree.
func Reference(root *cobra.Command) []byte {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var b bytes.Buffer
	var walk func(c *cobra.Command, depth int)
	walk = func(c *cobra.Command, depth int) {
		c.InitDefaultHelpFlag()
		fmt.Fprintf(&b, "%s %s\n\n", strings.Repeat("#", min(depth+2, 4)), c.CommandPath())
		desc := c.Long
		if desc == "" {
			desc = c.Short
		}
		if desc != "" {
			fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(desc))
		}
		fmt.Fprintf(&b, "```\n%s```\n\n", c.UsageString())
		// The shells' own subcommands of completion say nothing the
		// completion section does not.
		if c.Name() == "completion" {
			return
		}
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				walk(sub, depth+1)
			}
		}
	}
	walk(root, 0)
	return b.Bytes()
}

// UpdateReference returns doc, the text of docs/cli.md, with the reference
// of root (Reference) between the lines "<!-- begin NAME reference -->" and
// "<!-- end NAME reference -->".
func UpdateReference(doc []byte, root *cobra.Command) ([]byte, error) {
	begin := []byte("<!-- begin " + root.Name() + " reference -->\n")
	end := []byte("<!-- end " + root.Name() + " reference -->")
	i := bytes.Index(doc, begin)
	j := bytes.Index(doc, end)
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %q and %q lines around the reference of %s", bytes.TrimSpace(begin), end, root.Name())
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(begin)])
	out.WriteString("\n")
	out.Write(Reference(root))
	out.Write(doc[j:])
	return out.Bytes(), nil
}
