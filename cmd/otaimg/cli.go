package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/image"
)

// newRoot returns otaimg's command tree.
func newRoot() *cobra.Command {
	root := cli.NewRoot("otaimg", "make and check MCUboot-format firmware images",
		"otaimg makes and checks otaport firmware images, which are MCUboot images: keygen, sign,\n"+
			"verify, info and getpub work as MCUboot's imgtool does, and each reads what the other writes.")
	root.AddCommand(keygenCommand(), signCommand(), verifyCommand(), infoCommand(), getpubCommand(), keysetCommand())
	return root
}

// run is otaimg with its arguments and streams; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Run(context.Background(), newRoot(), args, stdout, stderr)
}

// intFlag accepts decimal, 0x hex, 0o octal and 0b binary, as imgtool's
// integer options do.
type intFlag struct {
	v   int64
	set bool
}

func (f *intFlag) String() string { return strconv.FormatInt(f.v, 10) }
func (f *intFlag) Type() string   { return "int" }
func (f *intFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a non-negative integer (use 0x for hex)", s)
	}
	f.v, f.set = n, true
	return nil
}

func keygenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keygen --type TYPE -o key.pem",
		Short: "generate a signing key (ed25519, ecdsa-p256, rsa-2048, rsa-3072) or an encryption key (x25519)",
	}
	fs := cmd.Flags()
	typ := fs.StringP("type", "t", "", "key type: "+strings.Join(image.KeyTypes(), ", ")+"; or "+image.KeyX25519+", a device's encryption key (ecdsa-p256 and rsa-2048 keys encrypt too)")
	out := fs.StringP("output", "o", "", "file to write the private key to (PKCS#8 PEM)")
	fs.StringVarP(out, "key", "k", "", "same as -o (imgtool's -k)")
	force := fs.Bool("force", false, "overwrite an existing key file")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return keygen(cmd.OutOrStdout(), pos, *typ, *out, *force)
	}
	return cmd
}

func keygen(stdout io.Writer, pos []string, typ, out string, force bool) error {
	if len(pos) != 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if typ == "" || out == "" {
		return cli.Usagef("need --type (%s, %s) and -o FILE", strings.Join(image.KeyTypes(), ", "), image.KeyX25519)
	}
	var pemBytes []byte
	var what string
	if typ == image.KeyX25519 {
		key, err := image.GenerateEncryptionKey()
		if err != nil {
			return err
		}
		if pemBytes, err = image.MarshalEncryptionPEM(key); err != nil {
			return err
		}
		what = fmt.Sprintf("an encryption key: sign --encrypt with its public half (otaimg getpub --key %s), the device decrypts with this file", out)
	} else {
		key, err := image.GenerateKey(typ)
		if err != nil {
			return cli.Usagef("%v, or %s", err, image.KeyX25519)
		}
		if pemBytes, err = image.MarshalPrivateKeyPEM(key); err != nil {
			return err
		}
		hash, _ := image.KeyHash(key.Public())
		what = fmt.Sprintf("key hash %x", hash)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(out, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; a new key would orphan the devices that trust the old one: choose another name or pass --force", out)
	}
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		return fmt.Errorf("write key %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key %s: %w", out, err)
	}
	fmt.Fprintf(stdout, "wrote %s key %s (%s)\n", typ, out, what)
	return nil
}

// signFlags are the flags of sign, imgtool's names and short forms.
type signFlags struct {
	keyPath, version, secCnt string
	headerSize, slotSize     cli.Size
	loadAddr, maxSectors     intFlag
	padHeader, pad, confirm  bool
	align, maxAlign          int
	overwriteOnly, nonBoot   bool
	pubFormat, erased        string
	compression              string
	dependencies             string
	encrypt, hmacSHA         string
	encryptKeyLen            int
}

func signCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "sign --key key.pem --version 1.2.3+4 [flags] in.bin out.img",
		Aliases: []string{"create"}, // imgtool's name
		Short:   "sign a binary into an image (imgtool sign)",
	}
	var f signFlags
	f.headerSize.Bytes = image.DefaultHeaderSize
	fs := cmd.Flags()
	fs.StringVarP(&f.keyPath, "key", "k", "", "private key (PEM); without it the image carries a hash and no signature")
	fs.StringVarP(&f.version, "version", "v", "", "image version major.minor.revision+build (required)")
	fs.StringVarP(&f.secCnt, "security-counter", "s", "", "security counter (number, or auto = from the version)")
	fs.VarP(&f.headerSize, "header-size", "H", "header size, the payload offset: 0x200, 512, 1KiB")
	fs.BoolVar(&f.padHeader, "pad-header", false, "add the header room in front of the input (otherwise the input must start with header-size zero bytes)")
	fs.VarP(&f.slotSize, "slot-size", "S", "slot size (0x8000, 32KiB, as board files write it): refuse an image that leaves no room for the trailer")
	fs.BoolVar(&f.pad, "pad", false, "pad the image to --slot-size and write the trailer magic (a pending upgrade)")
	fs.BoolVar(&f.confirm, "confirm", false, "like --pad, and mark the image confirmed (image_ok)")
	fs.IntVar(&f.align, "align", 1, "flash write size for the trailer: 1, 2, 4, 8, 16 or 32")
	fs.IntVar(&f.maxAlign, "max-align", 0, "largest write size of the slots: 8, 16 or 32 (default max(8, align))")
	fs.VarP(&f.maxSectors, "max-sectors", "M", "sectors in the swap status area (default 128)")
	fs.BoolVar(&f.overwriteOnly, "overwrite-only", false, "trailer for an overwrite-only bootloader")
	fs.VarP(&f.loadAddr, "load-addr", "L", "RAM load address (sets RAM_LOAD)")
	fs.StringVar(&f.pubFormat, "public-key-format", "hash", "hash: KEYHASH TLV; full: the whole public key (PUBKEY TLV)")
	fs.StringVarP(&f.erased, "erased-val", "R", "0xff", "value of erased flash: 0 or 0xff")
	fs.BoolVar(&f.nonBoot, "non-bootable", false, "set the NON_BOOTABLE flag")
	fs.StringVarP(&f.dependencies, "dependencies", "d", "", "images this one needs, as imgtool -d: \"(IMAGE,VERSION),...\", e.g. \"(1,2.0.0)\": the device's module of image index 1 (device.yaml modules, in order, after the default module's 0) must run 2.0.0 or later")
	fs.StringVar(&f.compression, "compression", "disabled", "disabled, lzma2, or lzma2armthumb (ARM Thumb branch filter first); falls back to a plain image when that is smaller, as imgtool does")
	fs.StringVarP(&f.encrypt, "encrypt", "E", "", "encrypt the payload for the device's encryption key `PUB.pem` (X25519, ecdsa-p256 or rsa-2048 public key; or a base64 AES-KW key file), as imgtool -E")
	fs.IntVar(&f.encryptKeyLen, "encrypt-keylen", 128, "AES key size with --encrypt: 128 or 256")
	fs.StringVar(&f.hmacSHA, "hmac-sha", "auto", "HKDF/HMAC of the X25519 key wrap with --encrypt: auto (256), 256, or 512 (TLV ENC_X25519_SHA512)")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error { return sign(cmd.OutOrStdout(), pos, &f) }
	return cmd
}

func sign(stdout io.Writer, pos []string, f *signFlags) error {
	if len(pos) != 2 {
		return cli.Usagef("want an input and an output file, got %d arguments", len(pos))
	}
	in, out := pos[0], pos[1]
	if f.version == "" {
		return cli.Usagef("--version is required (e.g. --version 1.2.3+4)")
	}
	v, err := image.ParseVersion(f.version)
	if err != nil {
		return cli.Usagef("--version: %v", err)
	}
	opts := image.SignOptions{
		Version:        v,
		HeaderSize:     int(f.headerSize.Bytes),
		HeaderIncluded: !f.padHeader,
		LoadAddr:       uint32(f.loadAddr.v),
		NonBootable:    f.nonBoot,
		SlotSize:       int64(f.slotSize.Bytes),
		Pad:            f.pad,
		Confirm:        f.confirm,
		Trailer: image.TrailerOptions{
			Align: f.align, MaxAlign: f.maxAlign, MaxSectors: int(f.maxSectors.v), OverwriteOnly: f.overwriteOnly,
		},
	}
	if f.loadAddr.v > 0xffffffff {
		return cli.Usagef("--load-addr 0x%x does not fit 32 bits", f.loadAddr.v)
	}
	switch f.compression {
	case "disabled", "":
	case image.CompressionLZMA2, image.CompressionLZMA2ARMThumb:
		opts.Compression = f.compression
	default:
		return cli.Usagef("--compression %q: want disabled, lzma2 or lzma2armthumb", f.compression)
	}
	switch f.pubFormat {
	case "hash":
	case "full":
		opts.FullPublicKey = true
	default:
		return cli.Usagef("--public-key-format %q: want hash or full", f.pubFormat)
	}
	switch f.erased {
	case "0xff", "0xFF":
	case "0":
		opts.ErasedZero = true
	default:
		return cli.Usagef("--erased-val %q: want 0 or 0xff", f.erased)
	}
	switch f.secCnt {
	case "":
	case "auto":
		c := image.AutoSecurityCounter(v)
		opts.SecurityCounter = &c
	default:
		n, err := strconv.ParseUint(f.secCnt, 0, 32)
		if err != nil {
			return cli.Usagef("--security-counter %q: want a 32-bit number or auto", f.secCnt)
		}
		c := uint32(n)
		opts.SecurityCounter = &c
	}
	if f.dependencies != "" {
		if opts.Dependencies, err = image.ParseDependencies(f.dependencies); err != nil {
			return cli.Usagef("--dependencies: %v", err)
		}
	}
	if err := f.encryption(&opts); err != nil {
		return err
	}
	var key crypto.Signer
	if f.keyPath != "" {
		if key, err = image.ReadPrivateKey(f.keyPath); err != nil {
			return err
		}
	}
	payload, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	img, err := image.Sign(payload, key, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if err := os.WriteFile(out, img, 0o644); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	signer := "unsigned (hash only)"
	if key != nil {
		kt, _ := image.KeyType(key.Public())
		h, _ := image.KeyHash(key.Public())
		signer = fmt.Sprintf("signed with %s key %x", kt, h[:4])
	}
	fmt.Fprintf(stdout, "%s -> %s: version %s, %d bytes, %s\n", in, out, v, len(img), signer)
	if opts.Encrypt != nil {
		t, _ := image.EncryptKeyType(opts.Encrypt, opts.HMACSHA512)
		fmt.Fprintf(stdout, "  encrypted AES-%d, key wrapped in %s for %s\n", opts.EncryptKeyLen, t, f.encrypt)
	}
	if opts.Compression != "" {
		h, _ := image.ParseHeader(img)
		if h.Flags&image.FlagCompressedLZMA2 != 0 {
			fmt.Fprintf(stdout, "  compressed %s: payload %d bytes from %d (%.1f %%)\n", opts.Compression, h.ImageSize, len(payload)-int(h.HeaderSize)*boolInt(opts.HeaderIncluded),
				100*float64(h.ImageSize)/float64(len(payload)-int(h.HeaderSize)*boolInt(opts.HeaderIncluded)))
		} else {
			fmt.Fprintf(stdout, "  not compressed: %s would not make the image smaller (as imgtool, otaimg then writes the plain image)\n", opts.Compression)
		}
	}
	return nil
}

// encryption reads the --encrypt flags into opts.
func (f *signFlags) encryption(opts *image.SignOptions) error {
	if f.encrypt == "" {
		if f.encryptKeyLen != 128 || (f.hmacSHA != "auto" && f.hmacSHA != "") {
			return cli.Usagef("--encrypt-keylen and --hmac-sha need --encrypt PUB.pem")
		}
		return nil
	}
	if f.encryptKeyLen != 128 && f.encryptKeyLen != 256 {
		return cli.Usagef("--encrypt-keylen %d: want 128 or 256", f.encryptKeyLen)
	}
	switch f.hmacSHA {
	case "auto", "256", "":
	case "512":
		opts.HMACSHA512 = true
	default:
		return cli.Usagef("--hmac-sha %q: want auto, 256 or 512", f.hmacSHA)
	}
	k, err := image.ReadEncryptionKey(f.encrypt)
	if err != nil {
		return err
	}
	if _, err := image.EncryptKeyType(k, opts.HMACSHA512); err != nil {
		return cli.Usagef("--encrypt %s: %v", f.encrypt, err)
	}
	opts.Encrypt, opts.EncryptKeyLen = k, f.encryptKeyLen
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func verifyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify [--key pub.pem]... [--enc-key priv.pem] image.img",
		Short: "check an image's hash and, with --key, its signature (an encrypted image decrypted with --enc-key)",
	}
	var keyPaths []string
	cmd.Flags().StringArrayVarP(&keyPaths, "key", "k", nil, "public or private key `file` (PEM) the signature must verify with; repeat for several")
	encKey := cmd.Flags().String("enc-key", "", "the device's encryption private key `PRIV.pem` (or AES-KW key file): decrypt an encrypted image's payload, which the hash covers plain")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error { return verify(cmd.OutOrStdout(), pos, keyPaths, *encKey) }
	return cmd
}

func verify(stdout io.Writer, pos, keyPaths []string, encKey string) error {
	if len(pos) != 1 {
		return cli.Usagef("want one image file, got %d arguments", len(pos))
	}
	var keys []crypto.PublicKey
	for _, p := range keyPaths {
		k, err := image.ReadPublicKey(p)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	opts := image.VerifyOptions{Keys: keys}
	if encKey != "" {
		k, err := image.ReadDecryptionKey(encKey)
		if err != nil {
			return err
		}
		opts.DecryptKey = k
	}
	path := pos[0]
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat image: %w", err)
	}
	img, err := image.VerifyWith(f, st.Size(), opts)
	if err != nil {
		if errors.Is(err, image.ErrDecryptKey) {
			return fmt.Errorf("%s: %w (--enc-key %s)", path, err, encKey)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(stdout, "%s: image %s, %d bytes (header 0x%x, payload 0x%x)\n", path, img.Version, img.TotalSize, img.Header.HeaderSize, img.Header.ImageSize)
	fmt.Fprintf(stdout, "  hash       %s %x: ok\n", img.HashType, img.Hash)
	switch {
	case img.Signer != nil:
		kt, _ := image.KeyType(img.Signer)
		h, _ := image.KeyHash(img.Signer)
		fmt.Fprintf(stdout, "  signature  %s by %s key %x: ok\n", img.Signature, kt, h)
	case img.Signature != 0:
		fmt.Fprintf(stdout, "  signature  %s: not checked (no --key given)\n", img.Signature)
	default:
		fmt.Fprintf(stdout, "  signature  none (no --key given)\n")
	}
	if img.HasSecurityCounter {
		fmt.Fprintf(stdout, "  security counter %d\n", img.SecurityCounter)
	}
	if e := img.Encryption; e != nil {
		fmt.Fprintf(stdout, "  encrypted  AES-%d, key in %s: decrypted with %s: ok\n", e.KeyLen*8, e.KeyTLV, image.DecryptKeyName(opts.DecryptKey))
	}
	if c := img.Compressed; c != nil {
		sig := "none"
		switch {
		case c.Signature != nil && img.Signer != nil:
			sig = "DECOMP_SIGNATURE: ok"
		case c.Signature != nil:
			sig = "DECOMP_SIGNATURE: not checked (no --key given)"
		}
		fmt.Fprintf(stdout, "  compressed %s: decompresses to a %d-byte payload, DECOMP_SHA %x: ok, %s\n", c.Method(), c.Size, c.SHA, sig)
	}
	return nil
}

// infoJSON is the --json form of otaimg info; field names are stable.
type infoJSON struct {
	File            string     `json:"file"`
	FileSize        int64      `json:"file_size"`
	Version         string     `json:"version"`
	Header          headerJSON `json:"header"`
	TotalSize       int64      `json:"total_size"`
	HashType        string     `json:"hash_type"`
	Hash            string     `json:"hash"`
	HashOK          bool       `json:"hash_ok"`
	HashError       string     `json:"hash_error,omitempty"`
	Signature       string     `json:"signature,omitempty"`
	KeyType         string     `json:"key_type,omitempty"`
	KeyHash         string     `json:"key_hash,omitempty"`
	SecurityCounter *uint32    `json:"security_counter,omitempty"`
	// Dependencies are the DEPENDENCY TLVs, as imgtool -d writes them.
	Dependencies []string     `json:"dependencies,omitempty"`
	TLVs         []tlvJSON    `json:"tlvs"`
	Trailer      *trailerJSON `json:"trailer,omitempty"`
	// Compression is set for a compressed image; hash_ok then also
	// covers the decompressed image's DECOMP_SHA.
	Compression *compressionJSON `json:"compression,omitempty"`
	// Encryption is set for an encrypted image, whose hash info cannot
	// check (it covers the plain payload: otaimg verify --enc-key does).
	Encryption *encryptionJSON `json:"encryption,omitempty"`
}

type encryptionJSON struct {
	AESBits int    `json:"aes_bits"`
	KeyTLV  string `json:"key_tlv"`
}

type compressionJSON struct {
	Method           string `json:"method"`
	DecompressedSize uint32 `json:"decompressed_size"`
	DecompressedHash string `json:"decompressed_hash"`
	DecompressedSig  bool   `json:"decompressed_signature"`
}

type headerJSON struct {
	LoadAddr         uint32   `json:"load_addr"`
	HeaderSize       uint16   `json:"hdr_size"`
	ProtectedTLVSize uint16   `json:"protected_tlv_size"`
	ImageSize        uint32   `json:"img_size"`
	Flags            uint32   `json:"flags"`
	FlagNames        []string `json:"flag_names"`
}

type tlvJSON struct {
	Area   string `json:"area"`
	Type   string `json:"type"`
	Code   uint16 `json:"code"`
	Offset int64  `json:"offset"`
	Len    int    `json:"len"`
	Value  string `json:"value"`
}

type trailerJSON struct {
	MaxAlign int    `json:"max_align"`
	ImageOK  byte   `json:"image_ok"`
	CopyDone byte   `json:"copy_done"`
	SwapInfo byte   `json:"swap_info"`
	SwapSize uint32 `json:"swap_size"`
}

func infoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info [--json] image.img",
		Short: "print an image's header, TLVs and trailer (signature not checked: see verify)",
	}
	asJSON := cmd.Flags().Bool("json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error { return info(cmd.OutOrStdout(), pos, *asJSON) }
	return cmd
}

func info(stdout io.Writer, pos []string, asJSON bool) error {
	if len(pos) != 1 {
		return cli.Usagef("want one image file, got %d arguments", len(pos))
	}
	path := pos[0]
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	r := bytes.NewReader(data)
	img, err := image.Parse(r, int64(len(data)))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	info := infoJSON{
		File: path, FileSize: int64(len(data)), Version: img.Version.String(), TotalSize: img.TotalSize,
		Header: headerJSON{
			LoadAddr: img.Header.LoadAddr, HeaderSize: img.Header.HeaderSize, ProtectedTLVSize: img.Header.ProtectedTLVSize,
			ImageSize: img.Header.ImageSize, Flags: img.Header.Flags, FlagNames: image.FlagNames(img.Header.Flags),
		},
		HashType: img.HashType.String(), Hash: hex.EncodeToString(img.Hash), KeyHash: hex.EncodeToString(img.KeyHash),
		TLVs: []tlvJSON{},
	}
	if info.Header.FlagNames == nil {
		info.Header.FlagNames = []string{}
	}
	if e := img.Encryption; e != nil {
		info.Encryption = &encryptionJSON{AESBits: e.KeyLen * 8, KeyTLV: e.KeyTLV.String()}
	}
	if _, err := image.Verify(r, int64(len(data)), nil); err != nil {
		info.HashError = err.Error()
	} else {
		info.HashOK = true
	}
	if img.Signature != 0 {
		info.Signature, info.KeyType = img.Signature.String(), img.Signature.KeyType()
	}
	if img.HasSecurityCounter {
		c := img.SecurityCounter
		info.SecurityCounter = &c
	}
	for _, d := range img.Dependencies {
		info.Dependencies = append(info.Dependencies, d.String())
	}
	if c := img.Compressed; c != nil {
		info.Compression = &compressionJSON{Method: c.Method(), DecompressedSize: c.Size, DecompressedHash: hex.EncodeToString(c.SHA), DecompressedSig: c.Signature != nil}
	}
	for _, a := range []struct {
		name string
		tlvs []image.TLV
	}{{"protected", img.ProtectedTLVs}, {"unprotected", img.TLVs}} {
		for _, t := range a.tlvs {
			info.TLVs = append(info.TLVs, tlvJSON{Area: a.name, Type: t.Type.String(), Code: uint16(t.Type), Offset: t.Offset, Len: len(t.Value), Value: hex.EncodeToString(t.Value)})
		}
	}
	if tr, ok, err := image.ReadTrailer(r, int64(len(data))); err == nil && ok && int64(len(data)) > img.TotalSize {
		info.Trailer = &trailerJSON{MaxAlign: tr.MaxAlign, ImageOK: tr.ImageOK, CopyDone: tr.CopyDone, SwapInfo: tr.SwapInfo, SwapSize: tr.SwapSize}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	printInfo(stdout, img, info)
	return nil
}

func printInfo(w io.Writer, img *image.Image, info infoJSON) {
	h := img.Header
	fmt.Fprintf(w, "file:             %s (%d bytes)\n", info.File, info.FileSize)
	fmt.Fprintf(w, "version:          %s\n", info.Version)
	fmt.Fprintf(w, "header:           magic 0x%08x, hdr_size 0x%x, img_size 0x%x, protected_tlv_size 0x%x\n", h.Magic, h.HeaderSize, h.ImageSize, h.ProtectedTLVSize)
	fmt.Fprintf(w, "load address:     0x%08x\n", h.LoadAddr)
	fmt.Fprintf(w, "flags:            0x%08x (%s)\n", h.Flags, h.FlagString())
	fmt.Fprintf(w, "total size:       %d (0x%x)\n", info.TotalSize, info.TotalSize)
	status := "ok"
	switch {
	case info.Encryption != nil && !info.HashOK:
		status = "not checked: it covers the plain payload; otaimg verify --enc-key PRIV.pem decrypts it"
	case !info.HashOK:
		status = "MISMATCH: " + info.HashError
	}
	fmt.Fprintf(w, "hash:             %s %s (%s)\n", info.HashType, info.Hash, status)
	if info.Signature != "" {
		fmt.Fprintf(w, "signature:        %s (%s key), not checked: use otaimg verify --key\n", info.Signature, info.KeyType)
	} else {
		fmt.Fprintf(w, "signature:        none\n")
	}
	if info.KeyHash != "" {
		fmt.Fprintf(w, "key hash:         %s\n", info.KeyHash)
	}
	if info.SecurityCounter != nil {
		fmt.Fprintf(w, "security counter: %d\n", *info.SecurityCounter)
	} else {
		fmt.Fprintf(w, "security counter: none\n")
	}
	if len(info.Dependencies) > 0 {
		fmt.Fprintf(w, "dependencies:     %s\n", strings.Join(info.Dependencies, ", "))
	}
	if e := info.Encryption; e != nil {
		fmt.Fprintf(w, "encryption:       AES-%d CTR, key wrapped in %s\n", e.AESBits, e.KeyTLV)
	}
	if c := info.Compression; c != nil {
		fmt.Fprintf(w, "compression:      %s, decompresses to a %d-byte payload, DECOMP_SHA %s\n", c.Method, c.DecompressedSize, c.DecompressedHash)
	}
	fmt.Fprintf(w, "TLVs:\n")
	for _, t := range info.TLVs {
		v := t.Value
		if len(v) > 64 {
			v = v[:64] + "..."
		}
		fmt.Fprintf(w, "  %-11s 0x%04x %-12s off 0x%05x len %3d  %s\n", t.Area, t.Code, t.Type, t.Offset, t.Len, v)
	}
	if tr := info.Trailer; tr != nil {
		fmt.Fprintf(w, "trailer:          max_align %d, image_ok 0x%02x, copy_done 0x%02x, swap_info 0x%02x, swap_size 0x%x\n", tr.MaxAlign, tr.ImageOK, tr.CopyDone, tr.SwapInfo, tr.SwapSize)
	}
}

func getpubCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "getpub --key key.pem [-o out] [--lang pem|c|rust|go]",
		Short: "print the public key of a key, as PEM or as source to embed",
	}
	fs := cmd.Flags()
	keyPath := fs.StringP("key", "k", "", "key file (PEM, private or public)")
	out := fs.StringP("output", "o", "", "output file (default standard output)")
	lang := fs.StringP("lang", "l", image.LangPEM, "pem, or c, rust, go: the key bytes as source to embed")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return getpub(cmd.OutOrStdout(), pos, *keyPath, *out, *lang)
	}
	return cmd
}

func getpub(stdout io.Writer, pos []string, keyPath, out, lang string) error {
	if len(pos) != 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if keyPath == "" {
		return cli.Usagef("need --key FILE")
	}
	pub, err := image.ReadPublicKey(keyPath)
	var b []byte
	if err != nil {
		// An X25519 encryption key is no signing key: its public half
		// is what sign --encrypt takes.
		ek, eerr := image.ReadEncryptionKey(keyPath)
		x, ok := ek.(*ecdh.PublicKey)
		if eerr != nil || !ok || x.Curve() != ecdh.X25519() {
			return err
		}
		if lang != image.LangPEM {
			return cli.Usagef("--lang %s: an X25519 encryption key is given to sign --encrypt as PEM only", lang)
		}
		if b, err = image.MarshalEncryptionPEM(x); err != nil {
			return err
		}
	} else if b, err = image.FormatPublicKey(pub, lang); err != nil {
		return cli.Usagef("--lang: %v", err)
	}
	if out == "" {
		_, err := stdout.Write(b)
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	return nil
}
