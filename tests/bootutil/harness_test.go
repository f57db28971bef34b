// Package bootutil runs MCUboot's own bootloader, compiled from its source
// for the host, on flash that otaport wrote: images signed by core/image,
// boot requests written with core/bootfmt/mcuboot, through core/flash. It is
// the proof that a device running MCUboot boots what otaport installs, in
// each upgrade mode, and reverts what otaport did not confirm. Test files
// only; it needs MCUBOOT_DIR and gcc, and skips without them.
package bootutil

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/image"
)

// mcubootSources are the files of an MCUboot tree the harness links, as the
// simulator's build (sim/mcuboot-sys/build.rs) and a Zephyr build with
// CONFIG_BOOT_SIGNATURE_TYPE_ECDSA_P256 and CONFIG_BOOT_ECDSA_TINYCRYPT
// compile them: the bootloader, every swap file (each compiles to nothing
// outside its mode), tinycrypt's ECDSA P-256 and SHA-256, and mbedtls' ASN.1
// parser for the key.
var mcubootSources = []string{
	"boot/bootutil/src/loader.c",
	"boot/bootutil/src/swap_misc.c",
	"boot/bootutil/src/swap_scratch.c",
	"boot/bootutil/src/swap_move.c",
	"boot/bootutil/src/swap_offset.c",
	"boot/bootutil/src/bootutil_misc.c",
	"boot/bootutil/src/bootutil_public.c",
	"boot/bootutil/src/bootutil_area.c",
	"boot/bootutil/src/bootutil_loader.c",
	"boot/bootutil/src/image_validate.c",
	"boot/bootutil/src/image_ecdsa.c",
	"boot/bootutil/src/tlv.c",
	"boot/bootutil/src/bootutil_find_key.c",
	"boot/bootutil/src/bootutil_img_hash.c",
	"boot/bootutil/src/bootutil_img_security_cnt.c",
	"boot/bootutil/src/fault_injection_hardening.c",
	"ext/tinycrypt/lib/source/utils.c",
	"ext/tinycrypt/lib/source/sha256.c",
	"ext/tinycrypt/lib/source/ecc.c",
	"ext/tinycrypt/lib/source/ecc_dsa.c",
	"ext/tinycrypt/lib/source/ecc_platform_specific.c",
	"ext/mbedtls-asn1/src/asn1parse.c",
	"ext/mbedtls-asn1/src/platform_util.c",
}

// encSources are what a build with MCUBOOT_ENCRYPT_EC256 adds, as the
// simulator's feature enc-ec256 does: bootutil's encrypted.c and
// tinycrypt's AES, CTR, HMAC and ECDH.
var encSources = []string{
	"boot/bootutil/src/encrypted.c",
	"ext/tinycrypt/lib/source/aes_encrypt.c",
	"ext/tinycrypt/lib/source/aes_decrypt.c",
	"ext/tinycrypt/lib/source/ctr_mode.c",
	"ext/tinycrypt/lib/source/hmac.c",
	"ext/tinycrypt/lib/source/ecc_dh.c",
}

// modeDefines are the -D flags of each mode's build, as MCUboot's Kconfig
// (boot/zephyr/include/mcuboot_config/mcuboot_config.h) sets them.
var modeDefines = map[mcuboot.Mode][]string{
	mcuboot.OverwriteOnly: {"-DMCUBOOT_OVERWRITE_ONLY=1"},
	mcuboot.SwapScratch:   {"-DMCUBOOT_SWAP_USING_SCRATCH=1"},
	mcuboot.SwapMove:      {"-DMCUBOOT_SWAP_USING_MOVE=1"},
	mcuboot.SwapOffset:    {"-DMCUBOOT_SWAP_USING_OFFSET=1"},
	mcuboot.DirectXIP:     {"-DMCUBOOT_DIRECT_XIP=1", "-DMCUBOOT_DIRECT_XIP_REVERT=1"},
}

// mcubootTree returns the MCUboot source tree and gcc, or skips the test
// saying how to run it.
func mcubootTree(t *testing.T) (dir, cc string) {
	t.Helper()
	dir = os.Getenv("MCUBOOT_DIR")
	if dir == "" {
		t.Skip("MCUBOOT_DIR is not set: to boot otaport's images with MCUboot's own bootloader, run " +
			"MCUBOOT_DIR=<mcuboot source tree> go test ./tests/bootutil (see docs/boot-schemes.md)")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: MCUboot's bootloader is compiled with the system gcc")
	}
	for _, f := range mcubootSources {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("MCUBOOT_DIR=%s is not an MCUboot source tree with its ext/ libraries: %v", dir, err)
		}
	}
	return dir, cc
}

// signer is the key otaport signs with and the C array MCUboot compiles in.
type signer struct {
	key    crypto.Signer
	pubInc string // a directory holding pubkey.inc
}

// newSigner makes an ECDSA P-256 key, writes its public half as PEM and
// reads it back as `otaimg getpub --lang c` does, into pubkey.inc: the key
// MCUboot's bootutil_keys[] holds.
func newSigner(t *testing.T) signer {
	t.Helper()
	key, err := image.GenerateKey("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	return signerOf(t, key)
}

// signerOf is newSigner with a given ECDSA P-256 key.
func signerOf(t *testing.T, key crypto.Signer) signer {
	t.Helper()
	dir := t.TempDir()
	pemBytes, err := image.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pemPath, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	pub, err := image.ReadPublicKey(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := image.FormatPublicKey(pub, image.LangC)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pubkey.inc"), c, 0o644); err != nil {
		t.Fatal(err)
	}
	return signer{key: key, pubInc: dir}
}

// sign makes an otaport image of payload at version v.
func (s signer) sign(t *testing.T, payload []byte, v string) []byte {
	t.Helper()
	ver, err := image.ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.Sign(payload, s.key, image.SignOptions{Version: ver})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// payload is n bytes of firmware, the same for the same seed.
func payload(seed byte, n int) []byte {
	rng := rand.New(rand.NewChaCha8([32]byte{'o', 't', 'a', seed}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// bootloader is one compiled MCUboot build.
type bootloader struct {
	bin  string
	mode mcuboot.Mode
}

// compile builds MCUboot's bootloader in mode for a flash whose slots have at
// most maxImgSectors sectors (MCUBOOT_MAX_IMG_SECTORS), with s's key, into
// the directory dir.
func compile(t *testing.T, dir string, mode mcuboot.Mode, maxImgSectors int, s signer) bootloader {
	t.Helper()
	return compileWith(t, dir, mode, maxImgSectors, s, nil)
}

// compileWith is compile; with encKey, a build that decrypts images
// encrypted for that P-256 key (MCUBOOT_ENC_IMAGES, MCUBOOT_ENCRYPT_EC256
// on tinycrypt, the key's PKCS#8 DER compiled in as enckey.inc).
func compileWith(t *testing.T, dir string, mode mcuboot.Mode, maxImgSectors int, s signer, encKey crypto.Signer) bootloader {
	t.Helper()
	src, cc := mcubootTree(t)
	defs, ok := modeDefines[mode]
	if !ok {
		t.Fatalf("no build of MCUboot for mode %s", mode)
	}
	bin := filepath.Join(dir, fmt.Sprintf("boot-%s-%d", mode, maxImgSectors))
	args := []string{"-std=c11", "-Wall", "-O1", "-o", bin,
		fmt.Sprintf("-DMCUBOOT_MAX_IMG_SECTORS=%d", maxImgSectors),
		`-DMBEDTLS_CONFIG_FILE="mbedtls_asn1_config.h"`}
	args = append(args, defs...)
	sources := mcubootSources
	if encKey != nil {
		bin += "-enc"
		args[4] = bin
		inc := t.TempDir()
		der, err := x509.MarshalPKCS8PrivateKey(encKey)
		if err != nil {
			t.Fatal(err)
		}
		var c strings.Builder
		c.WriteString("unsigned char enc_key[] = {")
		for _, b := range der {
			fmt.Fprintf(&c, "0x%02x,", b)
		}
		fmt.Fprintf(&c, "};\nstatic unsigned int enc_key_len = %d;\n", len(der))
		if err := os.WriteFile(filepath.Join(inc, "enckey.inc"), []byte(c.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-DMCUBOOT_ENC_IMAGES=1", "-DMCUBOOT_ENCRYPT_EC256=1", "-I"+inc)
		sources = append(slices.Clone(sources), encSources...)
	}
	args = append(args, "-I"+s.pubInc, "-Itestdata/harness/include",
		"-I"+filepath.Join(src, "boot/bootutil/include"), "-I"+filepath.Join(src, "boot/bootutil/src"),
		"-I"+filepath.Join(src, "ext/tinycrypt/lib/include"), "-I"+filepath.Join(src, "ext/mbedtls-asn1/include"),
		"testdata/harness/boot.c")
	for _, f := range sources {
		args = append(args, filepath.Join(src, f))
	}
	out, err := exec.Command(cc, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("compile MCUboot (%s): gcc %s: %v\n%s", mode, strings.Join(args, " "), err, out)
	}
	// A warning in the harness's own files (a -D the configuration header
	// redefines, say) is a build that is not the one the test thinks it runs.
	if bytes.Contains(out, []byte("testdata/harness/")) {
		t.Fatalf("compile MCUboot (%s): gcc warns about the harness:\n%s", mode, out)
	}
	return bootloader{bin: bin, mode: mode}
}

// report is what one power-on of the harness printed.
type report struct {
	booted  bool
	slot    string // primary, secondary
	version string
	refused []string // flash operations the strict back end refused
	ops     int      // writes and erases MCUboot made
	cut     bool     // the power failed (powerOnCut) before MCUboot was done
	out     string   // stdout, for messages
	log     string   // MCUboot's log (stderr)
}

func (r report) String() string {
	if r.cut {
		return fmt.Sprintf("lost power at flash operation %d", r.ops)
	}
	if !r.booted {
		return "no image booted"
	}
	return "boots " + r.slot + " " + r.version
}

// powerOn runs MCUboot once over d's flash and loads the flash it leaves.
// The caller checks r.refused: a flash operation a real part refuses.
func (b bootloader) powerOn(t *testing.T, d *device) report {
	t.Helper()
	return b.run(t, d, 0)
}

// powerOnCut is powerOn with the power failing instead of MCUboot's k-th
// write or erase (k >= 1): d keeps what the operations before it did.
func (b bootloader) powerOnCut(t *testing.T, d *device, k int) report {
	t.Helper()
	return b.run(t, d, k)
}

func (b bootloader) run(t *testing.T, d *device, cut int) report {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flash.bin")
	if err := os.WriteFile(path, d.bytes(t), 0o644); err != nil {
		t.Fatal(err)
	}
	var args []string
	if cut > 0 {
		args = []string{"--cut", strconv.Itoa(cut)}
	}
	args = append(args, path, hexs(d.g.sector), strconv.Itoa(int(d.g.write)), hexs(uint64(d.g.erased)),
		hexs(d.g.pri.off), hexs(d.g.pri.size), hexs(d.g.sec.off), hexs(d.g.sec.size))
	if d.g.scr.size != 0 {
		args = append(args, hexs(d.g.scr.off), hexs(d.g.scr.size))
	}
	cmd := exec.Command(b.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("MCUboot (%s) crashed: %v\nstdout:\n%s\nMCUboot's log:\n%s", b.mode, err, stdout.String(), stderr.String())
	}
	r := report{out: stdout.String(), log: stderr.String()}
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "refused":
			r.refused = append(r.refused, line)
		case len(f) == 4 && f[0] == "boot":
			r.booted, r.slot, r.version = true, f[1], f[3]
		case len(f) == 2 && f[0] == "fail":
		case len(f) == 2 && (f[0] == "ops" || f[0] == "cut"):
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("MCUboot harness printed %q", line)
			}
			r.ops, r.cut = n, f[0] == "cut"
		default:
			t.Fatalf("MCUboot harness printed %q, which this test does not read", line)
		}
	}
	flashBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d.load(t, flashBytes)
	return r
}

func hexs(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }
