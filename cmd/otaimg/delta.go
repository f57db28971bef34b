package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/delta"
	"github.com/otaport/otaport/core/image"
)

// deltaHeaderSize is a delta image's default header room: a patch is never
// executed in place, so it needs no vector-table alignment.
const deltaHeaderSize = 0x20

func diffCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff --key key.pem OLD.img NEW.img PATCH.img",
		Short: "make a signed delta image that rebuilds NEW.img on a device running OLD.img",
	}
	var keyPath string
	var hs cli.Size
	hs.Bytes = deltaHeaderSize
	var blockLog uint8
	fs := cmd.Flags()
	fs.StringVarP(&keyPath, "key", "k", "", "private key (PEM) that signs the delta image; without it the delta carries a hash and no signature")
	fs.VarP(&hs, "header-size", "H", "header size of the delta image, the patch's offset: 0x20, 512")
	fs.Uint8Var(&blockLog, "block-log", delta.DefaultBlockLog, fmt.Sprintf("log2 of the patch's block, the resume interval in target bytes (%d..%d)", delta.MinBlockLog, delta.MaxBlockLog))
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return diff(cmd.Context(), cmd.OutOrStdout(), pos, keyPath, int(hs.Bytes), blockLog)
	}
	return cmd
}

// readImage reads a full image file and returns its bytes up to its total
// size (without the padding or trailer of a padded image).
func readImage(path string) ([]byte, *image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read image: %w", err)
	}
	img, err := image.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if img.Delta != nil {
		return nil, nil, fmt.Errorf("%s: a delta image; give the full images a delta goes between", path)
	}
	return data[:img.TotalSize], img, nil
}

func diff(ctx context.Context, stdout io.Writer, pos []string, keyPath string, hs int, blockLog uint8) error {
	if len(pos) != 3 {
		return cli.Usagef("want OLD.img NEW.img PATCH.img, got %d arguments", len(pos))
	}
	if blockLog < delta.MinBlockLog || blockLog > delta.MaxBlockLog {
		return cli.Usagef("--block-log %d: want %d..%d", blockLog, delta.MinBlockLog, delta.MaxBlockLog)
	}
	var key crypto.Signer
	if keyPath != "" {
		k, err := image.ReadPrivateKey(keyPath)
		if err != nil {
			return err
		}
		key = k
	}
	oldData, oldImg, err := readImage(pos[0])
	if err != nil {
		return err
	}
	newData, newImg, err := readImage(pos[1])
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	patch, err := delta.Encode(oldData, newData, delta.Options{BlockLog: blockLog})
	if err != nil {
		return fmt.Errorf("diff %s %s: %w", pos[0], pos[1], err)
	}
	out, err := image.SignDelta(oldImg, newImg, patch, key, image.SignOptions{HeaderSize: hs})
	if err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	if err := os.WriteFile(pos[2], out, 0o644); err != nil {
		return fmt.Errorf("write delta image: %w", err)
	}
	fmt.Fprintf(stdout, "%s: delta image %s -> %s, %d bytes (patch %d bytes, %.1f %% of the new image's %d)\n",
		pos[2], oldImg.Version, newImg.Version, len(out), len(patch), 100*float64(len(patch))/float64(len(newData)), len(newData))
	return nil
}

// verifyDelta prints what a verified delta image says and, with a base
// image, rebuilds the target from it and verifies it as a full image.
func verifyDelta(ctx context.Context, stdout io.Writer, path string, img *image.Image, basePath string, keys []crypto.PublicKey) error {
	d := img.Delta
	fmt.Fprintf(stdout, "  delta      base %s %x; target %d bytes, SHA256 %x\n", image.TLVSHA256, d.BaseHash, d.TargetSize, d.TargetHash)
	if basePath == "" {
		fmt.Fprintf(stdout, "  target     not rebuilt (no --base given)\n")
		return nil
	}
	baseData, base, err := readImage(basePath)
	if err != nil {
		return err
	}
	if !bytes.Equal(base.Hash, d.BaseHash) {
		return fmt.Errorf("%s: the delta is for the base with hash %x, but --base %s has hash %x: %w", path, d.BaseHash, basePath, base.Hash, delta.ErrWrongBase)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read delta image: %w", err)
	}
	payload := data[img.Header.HeaderSize:img.Header.PayloadEnd()]
	var target bytes.Buffer
	if err := delta.Apply(ctx, bytes.NewReader(payload), bytes.NewReader(baseData), &target); err != nil {
		return fmt.Errorf("%s: apply to %s: %w", path, basePath, err)
	}
	t, err := image.Verify(bytes.NewReader(target.Bytes()), int64(target.Len()), keys)
	if err != nil {
		return fmt.Errorf("%s: the target rebuilt from %s: %w", path, basePath, err)
	}
	if err := img.CheckDeltaTarget(t); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sig := "signature not checked (no --key given)"
	if t.Signer != nil {
		sig = fmt.Sprintf("signature %s: ok", t.Signature)
	}
	fmt.Fprintf(stdout, "  target     rebuilt from %s: image %s, %d bytes, hash %s: ok, %s\n", basePath, t.Version, t.TotalSize, hex.EncodeToString(t.Hash[:8]), sig)
	return nil
}
