package main

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/fleet/api"
)

func tokenCommand() *cobra.Command {
	return clientGroup("token", "create, list and revoke API tokens, each of a scope and with an expiry (admin scope)", tokenCreate, tokenList, tokenRevoke)
}

func tokenCreate(f *clientFlags) *cobra.Command {
	var name, scope, expires string
	cmd := clientCommand(f, "create --name NAME --scope read|operator|admin [--expires 720h|30d|0]",
		"make a token and print its secret, once", cli.NoArgs, func(c *conn, _ []string) error {
			if name == "" || scope == "" {
				return cli.Usagef("give --name (how the list shows it) and --scope (read, operator or admin: the least that does the job)")
			}
			if _, err := api.ParseScope(scope); err != nil {
				return cli.Usagef("--scope: %v", err)
			}
			if _, err := api.ParseTTL(expires); err != nil {
				return cli.Usagef("--expires: %v", err)
			}
			var tok api.NewToken
			if err := c.postJSON("/tokens", api.CreateToken{Name: name, Scope: scope, Expires: expires}, &tok); err != nil {
				return err
			}
			if c.json {
				return c.printJSON(tok)
			}
			fmt.Fprintf(c.out, "token %s: scope %s, expires %s\n", tok.Token.Name, tok.Token.Scope, expiry(tok.Token.Expires))
			fmt.Fprintf(c.out, "secret (shown once; pass it as --token or OTASERVE_TOKEN): %s\n", tok.Secret)
			return nil
		})
	fs := cmd.Flags()
	fs.StringVar(&name, "name", "", "the token's name: who or what holds it (ci, alice, dashboard-wall)")
	fs.StringVar(&scope, "scope", "", "read (GET only), operator (also images and campaigns) or admin (everything, tokens included)")
	fs.StringVar(&expires, "expires", "", "how long it lasts, 720h or 30d (default 90 days); 0 for a token that never expires")
	return cmd
}

func tokenList(f *clientFlags) *cobra.Command {
	return clientCommand(f, "list", "list the tokens, without their secrets", cli.NoArgs, func(c *conn, _ []string) error {
		var ts []api.Token
		if err := c.call(http.MethodGet, "/tokens", "", nil, &ts); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(ts)
		}
		var rows [][]string
		for _, t := range ts {
			rows = append(rows, []string{t.Name, t.Scope, t.State, when(t.Created), expiry(t.Expires), when(t.LastUsed)})
		}
		return c.table("NAME\tSCOPE\tSTATE\tCREATED\tEXPIRES\tLAST USED", rows)
	})
}

func tokenRevoke(f *clientFlags) *cobra.Command {
	return clientCommand(f, "revoke NAME", "revoke a token: it is refused from now on, and its dashboard sessions end", cli.ExactArgs(1, "the token's NAME"), func(c *conn, args []string) error {
		var t api.Token
		if err := c.call(http.MethodDelete, "/tokens/"+url.PathEscape(args[0]), "", nil, &t); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(t)
		}
		fmt.Fprintf(c.out, "revoked token %s (scope %s): it is refused from now on, and its dashboard sessions end\n", t.Name, t.Scope)
		return nil
	})
}

// expiry is when a token expires, "never" for one that does not.
func expiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return when(t)
}
