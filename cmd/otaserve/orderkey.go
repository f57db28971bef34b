package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/fleet"
	"github.com/otaport/otaport/fleet/campaign"
)

// orderKeyCommand prints the public half of the key otaserve signs orders
// with, for device.yaml's order_key. It reads the key file, not a running
// server, so devices can be provisioned before the first start: a missing
// key in the data directory is made here, and "otaserve run" takes it.
func orderKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "order-key [--data DIR | --order-key FILE] [-o FILE]",
		Short: "print the public key devices check orders with (order_key in device.yaml)",
		Args:  cli.NoArgs,
	}
	fs := cmd.Flags()
	data := fs.String("data", defaultData, "data directory: the key is DIR/"+campaign.OrderKeyFile+", made if missing")
	keyFile := fs.String("order-key", "", "the order key's PEM file, as given to otaserve run --order-key")
	out := fs.StringP("output", "o", "", "write the public key to `file` instead of standard output")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		path, create := *keyFile, false
		if path == "" {
			path, create = fleet.OrderKeyPath(*data), true
		}
		key, _, err := campaign.LoadOrderKey(path, create)
		if err != nil {
			return err
		}
		pem, err := campaign.OrderPublicKeyPEM(key)
		if err != nil {
			return err
		}
		if *out == "" {
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		}
		if err := os.WriteFile(*out, pem, 0o644); err != nil {
			return fmt.Errorf("write the order public key: %w", err)
		}
		return nil
	}
	return cmd
}
