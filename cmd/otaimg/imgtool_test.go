package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/image"
)

// imgtoolCommand returns the command that runs MCUboot's imgtool, from env
// IMGTOOL: a path to imgtool.py (run with IMGTOOL_PYTHON, default python3)
// or a whole command line.
func imgtoolCommand(t *testing.T) []string {
	t.Helper()
	s := os.Getenv("IMGTOOL")
	if s == "" {
		t.Skip("IMGTOOL is not set: point it at MCUboot's scripts/imgtool.py (and IMGTOOL_PYTHON at a python3 with click, intelhex, cbor2 and cryptography) to check otaimg against imgtool itself")
	}
	f := strings.Fields(s)
	if len(f) == 1 && strings.HasSuffix(f[0], ".py") {
		py := os.Getenv("IMGTOOL_PYTHON")
		if py == "" {
			py = "python3"
		}
		f = []string{py, f[0]}
	}
	return f
}

type imgtool struct {
	t   *testing.T
	cmd []string
	dir string
}

func (it imgtool) run(args ...string) (string, error) {
	c := exec.Command(it.cmd[0], append(it.cmd[1:], args...)...)
	c.Dir = it.dir
	out, err := c.CombinedOutput()
	return string(out), err
}

func (it imgtool) must(args ...string) string {
	it.t.Helper()
	out, err := it.run(args...)
	if err != nil {
		it.t.Fatalf("imgtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func otaimg(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	var out bytes.Buffer
	code := run(args, &out, &out)
	return out.String(), code
}

func mustOtaimg(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, code := otaimg(t, dir, args...)
	if code != 0 {
		t.Fatalf("otaimg %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// signFlagSets are the sign options tried both ways; the flags are the same
// for imgtool and otaimg (imgtool requires --slot-size, so it is always given).
var signFlagSets = [][]string{
	{"-v", "1.2.3+4", "-H", "0x200", "--pad-header", "-S", "0x10000"},
	{"-v", "2.0.0", "-H", "0x20", "--pad-header", "-S", "0x10000", "-s", "17"},
	{"-v", "0.0.9+1", "-H", "0x200", "--pad-header", "-S", "0x4000", "-s", "auto", "--pad", "--align", "4"},
	{"-v", "1.0.0", "-H", "0x100", "--pad-header", "-S", "0x4000", "--confirm", "--align", "8", "--max-align", "16"},
	{"-v", "1.0.0", "-H", "0x200", "--pad-header", "-S", "0x10000", "--public-key-format", "full"},
	{"-v", "3.2.1", "-H", "0x200", "--pad-header", "-S", "0x4000", "--pad", "--overwrite-only", "-L", "0x20000000"},
}

// TestImgtoolInterop signs with otaimg and verifies with imgtool, and the
// reverse, for every key type and the option sets above; ed25519 images
// (deterministic) must also be byte-identical between the two tools.
func TestImgtoolInterop(t *testing.T) {
	cmd := imgtoolCommand(t)
	dir := t.TempDir()
	it := imgtool{t: t, cmd: cmd, dir: dir}
	t.Logf("imgtool version %s", strings.TrimSpace(it.must("version")))
	payload := make([]byte, 5000)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.bin"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, typ := range image.KeyTypes() {
		t.Run(typ, func(t *testing.T) {
			it.t = t
			ours, theirs := "ota-"+typ+".pem", "imgtool-"+typ+".pem"
			mustOtaimg(t, dir, "keygen", "--type", typ, "-o", ours)
			it.must("keygen", "-t", typ, "-k", theirs)

			// Key encodings: getpub PEM and C, and the key hash.
			for _, k := range []string{ours, theirs} {
				want := it.must("getpub", "-k", k, "-e", "pem")
				if got := mustOtaimg(t, dir, "getpub", "--key", k); got != want {
					t.Errorf("getpub %s: otaimg\n%s\nimgtool\n%s", k, got, want)
				}
				wantC := it.must("getpub", "-k", k, "-l", "c")
				gotC := mustOtaimg(t, dir, "getpub", "--key", k, "--lang", "c")
				if cutFirstLine(gotC) != cutFirstLine(wantC) {
					t.Errorf("getpub -l c %s: otaimg\n%s\nimgtool\n%s", k, gotC, wantC)
				}
				hashOut := filepath.Join(dir, "hash.bin")
				it.must("getpubhash", "-k", k, "-e", "raw", "-o", hashOut)
				wantHash, _ := os.ReadFile(hashOut)
				pub, err := image.ReadPublicKey(filepath.Join(dir, k))
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := image.KeyHash(pub); !bytes.Equal(got, wantHash) {
					t.Errorf("key hash of %s: %x, imgtool %x", k, got, wantHash)
				}
			}
			mustOtaimg(t, dir, "getpub", "--key", ours, "-o", "ota-pub.pem")
			it.must("getpub", "-k", theirs, "-e", "pem", "-o", "imgtool-pub.pem")

			for i, flags := range signFlagSets {
				name := func(who string) string { return who + "-" + typ + "-" + string(rune('a'+i)) + ".img" }
				// otaimg signs, imgtool verifies (with the private and the public key).
				mustOtaimg(t, dir, append(append([]string{"sign", "--key", ours}, flags...), "app.bin", name("ota"))...)
				for _, k := range []string{ours, "ota-pub.pem"} {
					if out := it.must("verify", "-k", k, name("ota")); !strings.Contains(out, "Image was correctly validated") {
						t.Errorf("imgtool verify %v: %s", flags, out)
					}
				}
				if out, err := it.run("verify", "-k", theirs, name("ota")); err == nil {
					t.Errorf("imgtool verified an otaimg image with another key: %s", out)
				}
				// imgtool signs, otaimg verifies.
				it.must(append(append([]string{"sign", "-k", theirs}, flags...), "app.bin", name("imgtool"))...)
				for _, k := range []string{theirs, "imgtool-pub.pem"} {
					if out := mustOtaimg(t, dir, "verify", "--key", k, name("imgtool")); !strings.Contains(out, "by "+typ+" key") {
						t.Errorf("otaimg verify %v: %s", flags, out)
					}
				}
				if out, code := otaimg(t, dir, "verify", "--key", ours, name("imgtool")); code != 1 || !strings.Contains(out, "unknown key") {
					t.Errorf("otaimg verify with another key: exit %d: %s", code, out)
				}
				// The same key and flags give the same image.
				mustOtaimg(t, dir, append(append([]string{"sign", "--key", theirs}, flags...), "app.bin", name("same"))...)
				a, _ := os.ReadFile(filepath.Join(dir, name("same")))
				b, _ := os.ReadFile(filepath.Join(dir, name("imgtool")))
				ia, err := image.Parse(bytes.NewReader(a), int64(len(a)))
				if err != nil {
					t.Fatal(err)
				}
				hashed := ia.Header.HashedSize()
				switch {
				case typ == image.KeyEd25519 && !bytes.Equal(a, b):
					t.Errorf("flags %v: otaimg and imgtool ed25519 images differ", flags)
				case len(b) < int(hashed) || !bytes.Equal(a[:hashed], b[:hashed]):
					t.Errorf("flags %v: hashed regions differ", flags)
				case ia.TotalSize < int64(len(a)) && len(a) != len(b):
					t.Errorf("flags %v: padded sizes differ: %d vs %d", flags, len(a), len(b))
				}
			}
		})
	}
}

func cutFirstLine(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}

// TestImgtoolInterop_Compressed: otaimg's compressed images pass imgtool's
// verify (that liblzma decodes their payload is core/image's
// TestCompressed_LiblzmaDecodesOurPayload, which needs python3 only);
// imgtool's pass otaimg's verify; both tools build
// the same structure (header but for the payload size, the same protected
// TLVs with the same DECOMP_* values) and fall back to the same plain image
// when compression does not help.
func TestImgtoolInterop_Compressed(t *testing.T) {
	cmd := imgtoolCommand(t)
	dir := t.TempDir()
	it := imgtool{t: t, cmd: cmd, dir: dir}
	thumb, err := os.ReadFile(filepath.Join(imageTestdata, "imgtool", "payload-thumb.bin"))
	if err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 6000)
	x := uint32(7)
	for i := range noise {
		x = x*1664525 + 1013904223
		noise[i] = byte(x >> 24)
	}
	for name, b := range map[string][]byte{
		"thumb.bin": thumb, "thumb-hdr.bin": append(make([]byte, 0x200), thumb...), "noise.bin": noise,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, typ := range []string{image.KeyEd25519, image.KeyECDSAP256, image.KeyRSA2048} {
		key := "k-" + typ + ".pem"
		it.must("keygen", "-t", typ, "-k", key)
		for _, method := range []string{image.CompressionLZMA2, image.CompressionLZMA2ARMThumb} {
			for _, in := range []string{"thumb.bin", "thumb-hdr.bin", "noise.bin"} {
				t.Run(typ+"/"+method+"/"+in, func(t *testing.T) {
					it.t = t
					flags := []string{"-k", key, "-v", "1.4.0", "-H", "0x200", "-S", "0x10000", "-s", "4", "--compression", method}
					if in != "thumb-hdr.bin" {
						flags = append(flags, "--pad-header")
					}
					ours, theirs := "ota.img", "imgtool.img"
					mustOtaimg(t, dir, append(append([]string{"sign"}, flags...), in, ours)...)
					it.must(append(append([]string{"sign"}, flags...), in, theirs)...)
					if out := it.must("verify", "-k", key, ours); !strings.Contains(out, "Image was correctly validated") {
						t.Errorf("imgtool verify: %s", out)
					}
					out := mustOtaimg(t, dir, "verify", "--key", key, theirs)
					a, _ := os.ReadFile(filepath.Join(dir, ours))
					b, _ := os.ReadFile(filepath.Join(dir, theirs))
					ia, err := image.Parse(bytes.NewReader(a), int64(len(a)))
					if err != nil {
						t.Fatal(err)
					}
					ib, err := image.Parse(bytes.NewReader(b), int64(len(b)))
					if err != nil {
						t.Fatal(err)
					}
					if in == "noise.bin" {
						// Both fall back to the plain image.
						if ia.Compressed != nil || ib.Compressed != nil {
							t.Fatalf("noise compressed: otaimg %v, imgtool %v", ia.Compressed != nil, ib.Compressed != nil)
						}
						if typ == image.KeyEd25519 && !bytes.Equal(a, b) {
							t.Fatal("the fallback images differ")
						}
						return
					}
					if ia.Compressed == nil || ib.Compressed == nil || !strings.Contains(out, "compressed "+method) {
						t.Fatalf("not compressed: otaimg %v, imgtool %v; otaimg verify said %s", ia.Compressed, ib.Compressed, out)
					}
					ha, hb := ia.Header, ib.Header
					ha.ImageSize, hb.ImageSize = 0, 0
					if typ == image.KeyECDSAP256 {
						// DECOMP_SIGNATURE holds a DER signature of 70 to 72 bytes.
						ha.ProtectedTLVSize = hb.ProtectedTLVSize
					}
					if ha != hb || !bytes.Equal(a[image.HeaderSize:ha.HeaderSize+2], b[image.HeaderSize:hb.HeaderSize+2]) {
						t.Errorf("headers differ: otaimg %+v, imgtool %+v", ia.Header, ib.Header)
					}
					if len(ia.ProtectedTLVs) != len(ib.ProtectedTLVs) {
						t.Fatalf("protected TLVs: otaimg %d, imgtool %d", len(ia.ProtectedTLVs), len(ib.ProtectedTLVs))
					}
					for i, ta := range ia.ProtectedTLVs {
						tb := ib.ProtectedTLVs[i]
						same := ta.Type == tb.Type && (bytes.Equal(ta.Value, tb.Value) || ta.Type == image.TLVDecompSignature && typ != image.KeyEd25519)
						if !same {
							t.Errorf("protected TLV %d: otaimg %s %x, imgtool %s %x", i, ta.Type, ta.Value, tb.Type, tb.Value)
						}
					}
				})
			}
		}
	}
}

// mcubootDecrypt decrypts an encrypted image in place as MCUboot's
// docs/encrypted_images.md describes it, with Python's cryptography (which
// imgtool needs anyway), so that imgtool verify, which does not decrypt,
// can check the plain image: argv image, private key PEM.
const mcubootDecrypt = `import sys, struct
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
img = bytearray(open(sys.argv[1], 'rb').read())
key = serialization.load_pem_private_key(open(sys.argv[2], 'rb').read(), None)
_, _, hsz, psz, isz, flags = struct.unpack_from('<IIHHII', img)
klen = 32 if flags & 8 else 16
off = hsz + isz + psz
_, tlen = struct.unpack_from('<HH', img, off)
end, off, aes = off + tlen, off + 4, None
while off < end:
    t, l = struct.unpack_from('<HH', img, off)
    v = bytes(img[off + 4:off + 4 + l])
    off += 4 + l
    if t == 0x30:
        aes = key.decrypt(v, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    elif t in (0x32, 0x33, 0x34):
        h = hashes.SHA512() if t == 0x34 else hashes.SHA256()
        pl = 65 if t == 0x32 else 32
        if t == 0x32:
            shared = key.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), v[:pl]))
        else:
            shared = key.exchange(x25519.X25519PublicKey.from_public_bytes(v[:pl]))
        km = HKDF(algorithm=h, length=klen + h.digest_size, salt=None, info=b'MCUBoot_ECIES_v1').derive(shared)
        tag, enc = v[pl:pl + h.digest_size], v[pl + h.digest_size:]
        m = hmac.HMAC(km[klen:], h)
        m.update(enc)
        m.verify(tag)
        d = Cipher(algorithms.AES(km[:klen]), modes.CTR(bytes(16))).decryptor()
        aes = d.update(enc) + d.finalize()
d = Cipher(algorithms.AES(aes), modes.CTR(bytes(16))).decryptor()
img[hsz:hsz + isz] = d.update(bytes(img[hsz:hsz + isz])) + d.finalize()
open(sys.argv[1], 'wb').write(img)
`

// TestImgtoolInterop_Encrypted: for each kind of encryption key imgtool
// makes (x25519, ecdsa-p256, rsa-2048), keys made by either tool, images
// encrypted by either: imgtool's verify with otaimg verify --enc-key, and
// otaimg's, decrypted as MCUboot's docs say (imgtool has no decrypt
// command), with imgtool verify; imgtool's dumpinfo reads otaimg's.
func TestImgtoolInterop_Encrypted(t *testing.T) {
	cmd := imgtoolCommand(t)
	dir := t.TempDir()
	it := imgtool{t: t, cmd: cmd, dir: dir}
	payload := make([]byte, 5001)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.bin"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	py := cmd[0]
	if !strings.HasSuffix(cmd[len(cmd)-1], ".py") || len(cmd) != 2 {
		py = "python3"
	}
	for _, tc := range []struct{ enc, sig string }{
		{image.KeyX25519, image.KeyEd25519}, {image.KeyECDSAP256, image.KeyECDSAP256}, {image.KeyRSA2048, image.KeyRSA2048},
	} {
		for _, bits := range []string{"128", "256"} {
			t.Run(tc.enc+"-"+bits, func(t *testing.T) {
				it.t = t
				sig := "sig-" + tc.sig + ".pem"
				it.must("keygen", "-t", tc.sig, "-k", sig)
				ours, theirs := "ota-"+tc.enc+".pem", "imgtool-"+tc.enc+".pem"
				os.Remove(filepath.Join(dir, ours))
				os.Remove(filepath.Join(dir, theirs))
				mustOtaimg(t, dir, "keygen", "--type", tc.enc, "-o", ours)
				it.must("keygen", "-t", tc.enc, "-k", theirs)
				for _, k := range []string{ours, theirs} {
					want := it.must("getpub", "-k", k, "-e", "pem")
					if got := mustOtaimg(t, dir, "getpub", "--key", k); got != want {
						t.Errorf("getpub %s: otaimg\n%s\nimgtool\n%s", k, got, want)
					}
				}
				mustOtaimg(t, dir, "getpub", "--key", ours, "-o", "ota-pub.pem")
				it.must("getpub", "-k", theirs, "-e", "pem", "-o", "imgtool-pub.pem")
				flags := []string{"-v", "1.4.0", "-H", "0x200", "--pad-header", "-S", "0x10000", "-s", "auto", "--encrypt-keylen", bits}

				// imgtool encrypts for otaimg's key; otaimg decrypts.
				it.must(append(append([]string{"sign", "-k", sig, "-E", "ota-pub.pem"}, flags...), "app.bin", "theirs.img")...)
				out := mustOtaimg(t, dir, "verify", "--key", sig, "--enc-key", ours, "theirs.img")
				if !strings.Contains(out, "encrypted  AES-"+bits) {
					t.Errorf("otaimg verify: %s", out)
				}
				if out, code := otaimg(t, dir, "verify", "--key", sig, "--enc-key", theirs, "theirs.img"); code != 1 || !strings.Contains(out, "image encrypted for another key") {
					t.Errorf("otaimg verify with another key: exit %d: %s", code, out)
				}

				// otaimg encrypts for imgtool's key; imgtool reads it, and
				// verifies it once decrypted.
				mustOtaimg(t, dir, append(append([]string{"sign", "--key", sig, "--encrypt", "imgtool-pub.pem"}, flags...), "app.bin", "ours.img")...)
				if out := it.must("dumpinfo", "ours.img"); !strings.Contains(out, "ENCRYPTED_AES"+bits) {
					t.Errorf("imgtool dumpinfo: %s", out)
				}
				c := exec.Command(py, "-c", mcubootDecrypt, "ours.img", theirs)
				c.Dir = dir
				if out, err := c.CombinedOutput(); err != nil {
					t.Fatalf("decrypt as MCUboot's docs say: %v\n%s", err, out)
				}
				if out := it.must("verify", "-k", sig, "ours.img"); !strings.Contains(out, "Image was correctly validated") {
					t.Errorf("imgtool verify of the decrypted image: %s", out)
				}
				plain, _ := os.ReadFile(filepath.Join(dir, "ours.img"))
				if !bytes.Contains(plain, payload[100:200]) {
					t.Error("the decrypted image does not hold the payload")
				}
			})
		}
	}
}
