package main

import (
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/core/keyset"
)

func keysetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keyset",
		Short: "make and show key sets, which rotate and revoke image keys over the air",
		Long: "A key set lists the keys a device trusts for images (--image-key), the keys that may sign the next\n" +
			"set (--root) and the keys revoked for good (--revoke). The first set is signed by a key the devices\n" +
			"were provisioned with; each later one by the roots of the set before it, and by its own roots.\n" +
			"otaserve keyset push sends a set to the fleet. docs/security.md says how to rotate a key.",
	}
	cmd.AddCommand(keysetSignCommand(), keysetShowCommand())
	return cmd
}

func keysetSignCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sign --key ROOT.pem --version N --root PUB.pem --image-key PUB.pem [--revoke PUB.pem] [--previous SET.json] -o SET.json",
		Short: "make a key set signed by one or more current roots",
	}
	fs := cmd.Flags()
	signers := fs.StringArrayP("key", "k", nil, "private key to sign with (repeat: each current root, and each new root)")
	version := fs.Uint64("version", 0, "the set's version: above the version devices hold")
	expires := fs.String("expires", "8760h", "how long the set is valid (devices with a trusted clock refuse images once it expires), or \"never\"")
	threshold := fs.Int("threshold", 1, "how many roots must sign the next set")
	roots := fs.StringArray("root", nil, "public key that may sign the next set (repeat)")
	imageKeys := fs.StringArray("image-key", nil, "public key images may be signed with (repeat)")
	revoke := fs.StringArray("revoke", nil, "public key never trusted again (repeat)")
	previous := fs.String("previous", "", "the set before this one: its revocations are carried over, as devices require")
	out := fs.StringP("output", "o", "", "file to write the set to (default standard output)")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		if len(pos) != 0 {
			return cli.Usagef("unexpected argument %q", pos[0])
		}
		if len(*signers) == 0 || *version == 0 || len(*roots) == 0 || len(*imageKeys) == 0 {
			return cli.Usagef("need --key, --version, --root and --image-key")
		}
		sp := keyset.Spec{Version: *version, Threshold: *threshold}
		if *expires != "never" {
			d, err := time.ParseDuration(*expires)
			if err != nil || d <= 0 {
				return cli.Usagef("--expires %q: want a duration such as 8760h, or never", *expires)
			}
			sp.Expires = time.Now().Add(d).Truncate(time.Second)
		}
		var err error
		if sp.Roots, err = image.ReadPublicKeys(*roots); err != nil {
			return err
		}
		if sp.ImageKeys, err = image.ReadPublicKeys(*imageKeys); err != nil {
			return err
		}
		if sp.Revoked, err = image.ReadPublicKeys(*revoke); err != nil {
			return err
		}
		if *previous != "" {
			b, err := os.ReadFile(*previous)
			if err != nil {
				return fmt.Errorf("--previous: %w", err)
			}
			prev, err := keyset.Parse(b)
			if err != nil {
				return fmt.Errorf("--previous %s: %w", *previous, err)
			}
			sp.RevokedHashes = prev.Revoked
		}
		var keys []crypto.Signer
		for _, p := range *signers {
			k, err := image.ReadPrivateKey(p)
			if err != nil {
				return err
			}
			keys = append(keys, k)
		}
		raw, err := keyset.Sign(sp, keys...)
		if err != nil {
			return err
		}
		if *out == "" {
			_, err := cmd.OutOrStdout().Write(raw)
			return err
		}
		if err := os.WriteFile(*out, raw, 0o644); err != nil {
			return fmt.Errorf("write the key set: %w", err)
		}
		return nil
	}
	return cmd
}

func keysetShowCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show SET.json [--json]",
		Short: "print a key set: its version, expiry, roots, image keys and revocations",
	}
	asJSON := cmd.Flags().Bool("json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		if len(pos) != 1 {
			return cli.Usagef("need one key set file")
		}
		b, err := os.ReadFile(pos[0])
		if err != nil {
			return err
		}
		s, err := keyset.Parse(b)
		if err != nil {
			return fmt.Errorf("%s: %w", pos[0], err)
		}
		return showKeySet(cmd.OutOrStdout(), s, *asJSON)
	}
	return cmd
}

type keySetJSON struct {
	Version   uint64    `json:"version"`
	Expires   time.Time `json:"expires,omitzero"`
	Threshold int       `json:"threshold"`
	Roots     []string  `json:"roots"`
	ImageKeys []string  `json:"image_keys"`
	Revoked   []string  `json:"revoked"`
}

func showKeySet(w io.Writer, s *keyset.Set, asJSON bool) error {
	ids := func(keys []crypto.PublicKey) []string {
		out := []string{}
		for _, k := range keys {
			h, _ := image.KeyHash(k)
			t, _ := image.KeyType(k)
			out = append(out, t+" "+hex.EncodeToString(h))
		}
		return out
	}
	j := keySetJSON{Version: s.Version, Expires: s.Expires, Threshold: s.Threshold, Roots: ids(s.Roots), ImageKeys: ids(s.ImageKeys), Revoked: []string{}}
	for _, r := range s.Revoked {
		j.Revoked = append(j.Revoked, hex.EncodeToString(r))
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(j)
	}
	exp := "never"
	if !s.Expires.IsZero() {
		exp = s.Expires.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "version:    %d\nexpires:    %s\nthreshold:  %d\n", j.Version, exp, j.Threshold)
	revoked := "none"
	if len(j.Revoked) > 0 {
		revoked = strings.Join(j.Revoked, "\n            ")
	}
	fmt.Fprintf(w, "roots:      %s\nimage keys: %s\nrevoked:    %s\n", strings.Join(j.Roots, "\n            "), strings.Join(j.ImageKeys, "\n            "), revoked)
	return nil
}
