package main

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/otaport/otaport/core/image"
)

const usage = `usage: otaimg <command> [flags] [args]

commands:
  keygen  --type ed25519|ecdsa-p256|rsa-2048|rsa-3072 -o key.pem
  sign    --key key.pem --version 1.2.3+4 [flags] in.bin out.img
  verify  [--key pub.pem]... image.img
  info    [--json] image.img
  getpub  --key key.pem [-o pub.pem] [--lang pem|c|rust|go]

Run "otaimg <command> -h" for the flags of a command.
`

// errUsage marks errors that are the caller's invocation, exit status 2.
var errUsage = errors.New("usage")

// errFlags is a flag error the flag package has already printed with the
// usage.
var errFlags = fmt.Errorf("bad flags: %w", errUsage)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) error{
		"keygen": cmdKeygen,
		"sign":   cmdSign,
		"create": cmdSign, // imgtool's alias
		"verify": cmdVerify,
		"info":   cmdInfo,
		"getpub": cmdGetpub,
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "otaimg: unknown command %q\n%s", name, usage)
		return 2
	}
	err := cmd(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFlags):
		return 2
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "otaimg %s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "otaimg %s: %v\n", name, err)
		return 1
	}
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments (as imgtool's click allows) and returns the
// positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errFlags
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: otaimg %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errUsage)
}

// intFlag accepts decimal, 0x hex, 0o octal and 0b binary, as imgtool's
// integer options do.
type intFlag struct {
	v   int64
	set bool
}

func (f *intFlag) String() string { return strconv.FormatInt(f.v, 10) }
func (f *intFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a non-negative integer (use 0x for hex)", s)
	}
	f.v, f.set = n, true
	return nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", "--type TYPE -o key.pem", stderr)
	typ := fs.String("type", "", "key type: "+strings.Join(image.KeyTypes(), ", "))
	fs.StringVar(typ, "t", "", "short for --type")
	out := fs.String("o", "", "file to write the private key to (PKCS#8 PEM)")
	fs.StringVar(out, "key", "", "same as -o (imgtool's -k)")
	fs.StringVar(out, "k", "", "same as -o")
	force := fs.Bool("force", false, "overwrite an existing key file")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	if *typ == "" || *out == "" {
		return usageErr("need --type (%s) and -o FILE", strings.Join(image.KeyTypes(), ", "))
	}
	key, err := image.GenerateKey(*typ)
	if err != nil {
		return usageErr("%v", err)
	}
	pemBytes, err := image.MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(*out, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; a new key would orphan the devices that trust the old one: choose another name or pass --force", *out)
	}
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		return fmt.Errorf("write key %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key %s: %w", *out, err)
	}
	hash, _ := image.KeyHash(key.Public())
	fmt.Fprintf(stdout, "wrote %s key %s (key hash %x)\n", *typ, *out, hash)
	return nil
}

func cmdSign(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sign", "--key key.pem --version 1.2.3+4 [flags] in.bin out.img", stderr)
	keyPath := fs.String("key", "", "private key (PEM); without it the image carries a hash and no signature")
	fs.StringVar(keyPath, "k", "", "short for --key")
	version := fs.String("version", "", "image version major.minor.revision+build (required)")
	fs.StringVar(version, "v", "", "short for --version")
	secCnt := fs.String("security-counter", "", "security counter (number, or auto = from the version)")
	fs.StringVar(secCnt, "s", "", "short for --security-counter")
	var headerSize, slotSize, loadAddr, maxSectors intFlag
	headerSize.v = image.DefaultHeaderSize
	fs.Var(&headerSize, "header-size", "header size, the payload offset (default 0x200)")
	fs.Var(&headerSize, "H", "short for --header-size")
	padHeader := fs.Bool("pad-header", false, "add the header room in front of the input (otherwise the input must start with header-size zero bytes)")
	fs.Var(&slotSize, "slot-size", "slot size: refuse an image that leaves no room for the trailer")
	fs.Var(&slotSize, "S", "short for --slot-size")
	pad := fs.Bool("pad", false, "pad the image to --slot-size and write the trailer magic (a pending upgrade)")
	confirm := fs.Bool("confirm", false, "like --pad, and mark the image confirmed (image_ok)")
	align := fs.Int("align", 1, "flash write size for the trailer: 1, 2, 4, 8, 16 or 32")
	maxAlign := fs.Int("max-align", 0, "largest write size of the slots: 8, 16 or 32 (default max(8, align))")
	fs.Var(&maxSectors, "max-sectors", "sectors in the swap status area (default 128)")
	fs.Var(&maxSectors, "M", "short for --max-sectors")
	overwriteOnly := fs.Bool("overwrite-only", false, "trailer for an overwrite-only bootloader")
	fs.Var(&loadAddr, "load-addr", "RAM load address (sets RAM_LOAD)")
	fs.Var(&loadAddr, "L", "short for --load-addr")
	pubFormat := fs.String("public-key-format", "hash", "hash: KEYHASH TLV; full: the whole public key (PUBKEY TLV)")
	erased := fs.String("erased-val", "0xff", "value of erased flash: 0 or 0xff")
	fs.StringVar(erased, "R", "0xff", "short for --erased-val")
	nonBootable := fs.Bool("non-bootable", false, "set the NON_BOOTABLE flag")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr("want an input and an output file, got %d arguments", len(pos))
	}
	in, out := pos[0], pos[1]
	if *version == "" {
		return usageErr("--version is required (e.g. --version 1.2.3+4)")
	}
	v, err := image.ParseVersion(*version)
	if err != nil {
		return usageErr("--version: %v", err)
	}
	opts := image.SignOptions{
		Version:        v,
		HeaderSize:     int(headerSize.v),
		HeaderIncluded: !*padHeader,
		LoadAddr:       uint32(loadAddr.v),
		NonBootable:    *nonBootable,
		SlotSize:       slotSize.v,
		Pad:            *pad,
		Confirm:        *confirm,
		Trailer: image.TrailerOptions{
			Align: *align, MaxAlign: *maxAlign, MaxSectors: int(maxSectors.v), OverwriteOnly: *overwriteOnly,
		},
	}
	if loadAddr.v > 0xffffffff {
		return usageErr("--load-addr 0x%x does not fit 32 bits", loadAddr.v)
	}
	switch *pubFormat {
	case "hash":
	case "full":
		opts.FullPublicKey = true
	default:
		return usageErr("--public-key-format %q: want hash or full", *pubFormat)
	}
	switch *erased {
	case "0xff", "0xFF":
	case "0":
		opts.ErasedZero = true
	default:
		return usageErr("--erased-val %q: want 0 or 0xff", *erased)
	}
	switch *secCnt {
	case "":
	case "auto":
		c := image.AutoSecurityCounter(v)
		opts.SecurityCounter = &c
	default:
		n, err := strconv.ParseUint(*secCnt, 0, 32)
		if err != nil {
			return usageErr("--security-counter %q: want a 32-bit number or auto", *secCnt)
		}
		c := uint32(n)
		opts.SecurityCounter = &c
	}
	var key crypto.Signer
	if *keyPath != "" {
		if key, err = image.ReadPrivateKey(*keyPath); err != nil {
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
	return nil
}

func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "[--key pub.pem]... image.img", stderr)
	var keyPaths listFlag
	fs.Var(&keyPaths, "key", "public or private key (PEM) the signature must verify with; repeat for several")
	fs.Var(&keyPaths, "k", "short for --key")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("want one image file, got %d arguments", len(pos))
	}
	var keys []crypto.PublicKey
	for _, p := range keyPaths {
		k, err := image.ReadPublicKey(p)
		if err != nil {
			return err
		}
		keys = append(keys, k)
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
	img, err := image.Verify(f, st.Size(), keys)
	if err != nil {
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
	return nil
}

// infoJSON is the --json form of otaimg info; field names are stable.
type infoJSON struct {
	File            string       `json:"file"`
	FileSize        int64        `json:"file_size"`
	Version         string       `json:"version"`
	Header          headerJSON   `json:"header"`
	TotalSize       int64        `json:"total_size"`
	HashType        string       `json:"hash_type"`
	Hash            string       `json:"hash"`
	HashOK          bool         `json:"hash_ok"`
	HashError       string       `json:"hash_error,omitempty"`
	Signature       string       `json:"signature,omitempty"`
	KeyType         string       `json:"key_type,omitempty"`
	KeyHash         string       `json:"key_hash,omitempty"`
	SecurityCounter *uint32      `json:"security_counter,omitempty"`
	TLVs            []tlvJSON    `json:"tlvs"`
	Trailer         *trailerJSON `json:"trailer,omitempty"`
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

func cmdInfo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("info", "[--json] image.img", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("want one image file, got %d arguments", len(pos))
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
	if *asJSON {
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
	if !info.HashOK {
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

func cmdGetpub(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("getpub", "--key key.pem [-o out] [--lang pem|c|rust|go]", stderr)
	keyPath := fs.String("key", "", "key file (PEM, private or public)")
	fs.StringVar(keyPath, "k", "", "short for --key")
	out := fs.String("o", "", "output file (default standard output)")
	lang := fs.String("lang", image.LangPEM, "pem, or c, rust, go: the key bytes as source to embed")
	fs.StringVar(lang, "l", image.LangPEM, "short for --lang")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	if *keyPath == "" {
		return usageErr("need --key FILE")
	}
	pub, err := image.ReadPublicKey(*keyPath)
	if err != nil {
		return err
	}
	b, err := image.FormatPublicKey(pub, *lang)
	if err != nil {
		return usageErr("--lang: %v", err)
	}
	if *out == "" {
		_, err := stdout.Write(b)
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	return nil
}
