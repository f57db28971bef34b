package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/fleet/api"
)

func keysetCommand() *cobra.Command {
	return clientGroup("keyset", "push a key set to the fleet (rotate or revoke image keys), list the chain", keysetPush, keysetList)
}

func keysetPush(f *clientFlags) *cobra.Command {
	return clientCommand(f, "push SET.json", "check a key set (otaimg keyset sign) against the chain and send it to every device", cobra.ExactArgs(1), func(c *conn, args []string) error {
		b, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		var ks api.KeySet
		if err := c.call(http.MethodPost, "/keysets", "application/json", bytes.NewReader(b), &ks); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		if c.json {
			return c.printJSON(ks)
		}
		fmt.Fprintf(c.out, "key set version %d pushed: %d image keys, %d revoked; each device's version shows it once taken (otaserve device list)\n", ks.Version, len(ks.ImageKeys), len(ks.Revoked))
		return nil
	})
}

func keysetList(f *clientFlags) *cobra.Command {
	return clientCommand(f, "list", "list the fleet's key sets, oldest first", cli.NoArgs, func(c *conn, _ []string) error {
		var sets []api.KeySet
		if err := c.call(http.MethodGet, "/keysets", "", nil, &sets); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(sets)
		}
		var rows [][]string
		for _, s := range sets {
			exp := "never"
			if !s.Expires.IsZero() {
				exp = s.Expires.Local().Format(time.DateOnly)
			}
			rows = append(rows, []string{strconv.FormatUint(s.Version, 10), exp, strings.Join(s.ImageKeys, ","), dash(strings.Join(s.Revoked, ","))})
		}
		return c.table("VERSION\tEXPIRES\tIMAGE KEYS\tREVOKED", rows)
	})
}
