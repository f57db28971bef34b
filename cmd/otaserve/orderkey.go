package main

import (
	"crypto/ed25519"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet"
	"github.com/otaport/otaport/fleet/campaign"
)

// orderKeyCommand prints the public half of the key otaserve signs orders
// with, for device.yaml's order_key. It reads the key file, not a running
// server, so devices can be provisioned before the first start: a missing
// key in the data directory is made here, and "otaserve run" takes it.
// With --endorse it also signs the public key with an image signing
// key, into the data directory, for devices provisioned before signed
// orders (docs/security.md).
func orderKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "order-key [--data DIR | --order-key FILE] [-o FILE] [--endorse IMAGE-KEY.pem]",
		Short: "print the public key devices check orders with (order_key in device.yaml)",
		Args:  cli.NoArgs,
	}
	fs := cmd.Flags()
	data := fs.String("data", defaultData, "data directory: the key is DIR/"+campaign.OrderKeyFile+", made if missing")
	keyFile := fs.String("order-key", "", "the order key's PEM file, as given to otaserve run --order-key")
	out := fs.StringP("output", "o", "", "write the public key to `file` instead of standard output")
	endorse := fs.String("endorse", "", "image signing key (PEM `file`) that endorses the order key, for devices provisioned before signed orders: written to DIR/"+fleet.EndorsementFile)
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
		if *endorse != "" {
			signer, err := image.ReadPrivateKey(*endorse)
			if err != nil {
				return fmt.Errorf("--endorse: %w", err)
			}
			e, err := cloud.Endorse(signer, key.Public().(ed25519.PublicKey))
			if err != nil {
				return fmt.Errorf("--endorse %s: %w", *endorse, err)
			}
			path := fleet.EndorsementPath(*data)
			if err := os.WriteFile(path, []byte(e+"\n"), 0o644); err != nil {
				return fmt.Errorf("write the order key's endorsement: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "otaserve: the order key's endorsement by %s is in %s: otaserve run (with --key of that image key) sends it with every signed order\n", *endorse, path)
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
