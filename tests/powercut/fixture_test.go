package powercut

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/delta"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// Versions of the two images of every sweep: the factory image the device
// runs before the upgrade and the image it upgrades to.
const (
	OldVersion = "1.0.0"
	NewVersion = "2.0.0"
)

// fixture is one board made ready for a sweep: its layout, a signing key,
// the old and new images, and the flash of the device as it runs the old
// image before any upgrade. It is read-only once built, so the workers of
// a sweep share it; each run works on a clone of base.
type fixture struct {
	board    Board
	layout   hal.Layout
	key      crypto.Signer
	bootOpts boot.Options
	keys     []crypto.PublicKey
	oldImg   []byte
	newImg   []byte
	newFile  string // newImg as a file: the source the engine installs from
	// kind is the kind of newImg; slotImg what the update slot holds once
	// it is installed (newImg, or its plain form), where a download's
	// checkpoint is checked; nil where the slot's bytes are not the
	// download's (a compressed image's, a delta's).
	kind    Kind
	slotImg []byte
	// runImg is what the running slot holds once the new image runs,
	// where a run that ends on it is checked: an encrypted image's plain
	// form (MCUboot decrypted it into app, or the engine wrote it plain);
	// nil for the other kinds.
	runImg []byte
	// decKey is the device's decryption key (an encrypted kind), which
	// the engine and the simulated MCUboot decrypt with.
	decKey     any
	oldVer     string // versions as the bootloader reports them
	newVer     string
	chunk      int
	checkpoint int64
	log        *slog.Logger // nil: none
	// http is the engines' HTTP client: the suite installs from files,
	// and one client for every engine saves a transport per power-on.
	http *http.Client
	base *flash.Emulator
	// cport: the software runs on the C port (Config.CPort).
	cport bool
}

// newFixture signs the images of board b, writes the new one to a file in
// dir, programs the old one into app as a factory programmer does and
// powers the device on once.
func newFixture(ctx context.Context, b Board, cfg Config, dir string, kind Kind) (*fixture, error) {
	// A key derived from the board name: the images, and so every
	// operation count and torn point, are the same from run to run.
	seed := sha256.Sum256([]byte("otaport power-cut suite " + b.Name))
	key, err := boardKey(b.Layout.Signature, seed)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	f := &fixture{
		board:  b,
		layout: b.Layout,
		key:    key,
		keys:   []crypto.PublicKey{key.Public()},
		chunk:  cfg.chunkSize(),

		checkpoint: cfg.checkpointEvery(),
		http:       &http.Client{},
	}
	f.log = cfg.Logger
	f.cport = cfg.CPort
	f.kind = kind
	if kind == KindEncrypted {
		k, err := ecdh.X25519().NewPrivateKey(seed[:])
		if err != nil {
			return nil, err
		}
		f.decKey = k
	}
	f.bootOpts = boot.Options{Keys: f.keys, Logger: cfg.Logger, DecryptKey: f.decKey}
	if f.oldImg, err = f.sign(OldVersion, cfg.payloadSize(), 1); err != nil {
		return nil, err
	}
	if err := f.signNew(cfg.payloadSize()); err != nil {
		return nil, err
	}
	f.newFile = filepath.Join(dir, b.Name+"-"+NewVersion+"-"+cmpKind(kind)+".img")
	if err := os.WriteFile(f.newFile, f.newImg, 0o644); err != nil {
		return nil, fmt.Errorf("board %s: write the new image: %w", b.Name, err)
	}
	for _, im := range []struct {
		b []byte
		v *string
	}{{f.oldImg, &f.oldVer}, {f.newImg, &f.newVer}} {
		h, err := image.ParseHeader(im.b)
		if err != nil {
			return nil, fmt.Errorf("board %s: %w", b.Name, err)
		}
		*im.v = h.Version.String()
	}

	dev, err := flash.NewMemoryWith(b.Layout.Flash, flash.Options{Strict: true})
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	if err := f.factory(dev); err != nil {
		return nil, err
	}
	o, err := f.powerOn(ctx, dev)
	if err != nil {
		return nil, fmt.Errorf("board %s: first power-on of the factory image: %w", b.Name, err)
	}
	if o.res.Version != f.oldVer {
		return nil, fmt.Errorf("board %s: the factory image does not run: booted %+v", b.Name, o.res)
	}
	f.base = dev
	return f, nil
}

// sign returns a signed image of version v with a payload of n bytes that
// differs per image.
func (f *fixture) sign(v string, n int, salt byte) ([]byte, error) {
	return f.signWith(v, payloadOf(n, salt), image.SignOptions{})
}

// payloadOf returns n pseudo-random bytes that differ with salt.
func payloadOf(n int, salt byte) []byte {
	payload := make([]byte, n)
	r := rand.NewChaCha8([32]byte{salt, 'p', 'c'})
	_, _ = r.Read(payload)
	return payload
}

// signWith signs payload as version v with opts (its version and erased
// value are the fixture's).
func (f *fixture) signWith(v string, payload []byte, opts image.SignOptions) ([]byte, error) {
	ver, err := image.ParseVersion(v)
	if err != nil {
		return nil, err
	}
	opts.Version, opts.ErasedZero = ver, f.layout.Flash.EraseValue == 0
	img, err := image.Sign(payload, f.key, opts)
	if err != nil {
		return nil, fmt.Errorf("board %s: sign image %s: %w", f.board.Name, v, err)
	}
	return img, nil
}

// cmpKind names kind in a file name.
func cmpKind(k Kind) string {
	if k == KindPlain {
		return "plain"
	}
	return string(k)
}

// signNew makes the new image of the fixture's kind, with a payload of n
// bytes, and what the update slot holds once it is installed.
func (f *fixture) signNew(n int) error {
	var err error
	switch f.kind {
	case KindPlain:
		f.newImg, err = f.sign(NewVersion, n, 2)
		f.slotImg = f.newImg
	case KindCompressed:
		// Half the bits random: LZMA2 halves it, and otaimg keeps the
		// compressed form only when it is smaller.
		p := payloadOf(n, 2)
		for i := range p {
			p[i] &= 0x0f
		}
		f.newImg, err = f.signWith(NewVersion, p, image.SignOptions{Compression: image.CompressionLZMA2})
		if err == nil {
			if h, herr := image.ParseHeader(f.newImg); herr != nil || h.Flags&image.FlagCompressedLZMA2 == 0 {
				return fmt.Errorf("board %s: the compressed image is not compressed (%v)", f.board.Name, herr)
			}
		}
	case KindEncrypted:
		f.newImg, err = encrypted.get(f.board.Name, n, func() ([]byte, error) {
			return f.signWith(NewVersion, payloadOf(n, 2), image.SignOptions{Encrypt: f.decKey.(*ecdh.PrivateKey).PublicKey()})
		})
		if err == nil {
			f.runImg, err = f.plainForm(f.newImg)
		}
		if err == nil {
			f.slotImg = f.runImg
			if f.layout.Bootloader.Name == hal.BootloaderMCUboot {
				f.slotImg = f.newImg // MCUboot decrypts it
			}
		}
	case KindDelta:
		// The next build: the first half as the old image's, the rest
		// new, so that the patch both copies from the base and carries
		// literals, over several blocks.
		p := payloadOf(n, 1)
		copy(p[n/2:], payloadOf(n-n/2, 2))
		var target []byte
		if target, err = f.signWith(NewVersion, p, image.SignOptions{}); err == nil {
			f.newImg, err = f.signDelta(target)
		}
	default:
		return fmt.Errorf("image kind %q: unknown", f.kind)
	}
	return err
}

// plainForm returns the encrypted image img with its payload decrypted
// under the same header and TLVs: what the update slot holds once img is
// installed where the bootloader does not decrypt (an MCUboot board's keeps
// the image as received), and the running slot wherever img runs.
func (f *fixture) plainForm(img []byte) ([]byte, error) {
	parsed, err := image.Parse(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		return nil, err
	}
	r, err := image.DecryptingReader(bytes.NewReader(img), parsed, f.decKey)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, parsed.TotalSize)
	if _, err := r.ReadAt(plain, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return plain, nil
}

// signDelta returns the delta image from the old image to target, its
// patch in blocks of 4 KiB so that a download of a few tens of KiB has
// block boundaries to resume from.
func (f *fixture) signDelta(target []byte) ([]byte, error) {
	bi, err := image.Parse(bytes.NewReader(f.oldImg), int64(len(f.oldImg)))
	if err != nil {
		return nil, err
	}
	ti, err := image.Parse(bytes.NewReader(target), int64(len(target)))
	if err != nil {
		return nil, err
	}
	patch, err := delta.Encode(f.oldImg[:bi.TotalSize], target[:ti.TotalSize], delta.Options{BlockLog: delta.MinBlockLog})
	if err != nil {
		return nil, err
	}
	return image.SignDelta(bi, ti, patch, f.key, image.SignOptions{ErasedZero: f.layout.Flash.EraseValue == 0})
}

// boardKey returns a key of the board's signature algorithm (its
// image.signature: the bootloader boots no other), derived from seed where
// the algorithm allows it so that the images keep their size from run to
// run: ed25519 and ECDSA (signed as RFC 6979, deterministic) from the seed;
// RSA keys are generated once per run, their signatures have a fixed size.
func boardKey(alg string, seed [32]byte) (crypto.Signer, error) {
	switch alg {
	case image.KeyEd25519:
		return ed25519.NewKeyFromSeed(seed[:]), nil
	case image.KeyECDSAP256:
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed[:])
		if err != nil {
			return nil, err
		}
		return deterministicSigner{k}, nil
	case image.KeyRSA2048, image.KeyRSA3072:
		rsaKeys.Do(func() {
			rsaKeys.m = map[string]*rsa.PrivateKey{}
			for bits, name := range map[int]string{2048: image.KeyRSA2048, 3072: image.KeyRSA3072} {
				k, err := rsa.GenerateKey(crand.Reader, bits)
				if err != nil {
					rsaKeys.err = err
					return
				}
				rsaKeys.m[name] = k
			}
		})
		return rsaKeys.m[alg], rsaKeys.err
	}
	return nil, fmt.Errorf("image.signature %q: no key for it in the suite", alg)
}

// encrypted holds each board's encrypted image, made once per process: the
// AES key of an encrypted image is random at every signing (imgtool's
// too), and sweeps that compare their figures (the Go port's and the C
// port's) need the same bytes, so that each cut falls on the same flash
// operation, as the other kinds get from their fixed keys and payloads.
var encrypted imageCache

// imageCache is images by board and payload size, each made once.
type imageCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

// get returns the image of board and payload size n, made by mk the
// first time.
func (c *imageCache) get(board string, n int, mk func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := fmt.Sprintf("%s/%d", board, n)
	if b, ok := c.m[k]; ok {
		return b, nil
	}
	b, err := mk()
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	c.m[k] = b
	return b, nil
}

var rsaKeys struct {
	sync.Once
	m   map[string]*rsa.PrivateKey
	err error
}

// deterministicSigner signs with ECDSA as RFC 6979 does (no randomness),
// so that the signature, and with its DER length the image, is the same on
// every run.
type deterministicSigner struct{ k *ecdsa.PrivateKey }

func (d deterministicSigner) Public() crypto.PublicKey { return d.k.Public() }

func (d deterministicSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return d.k.Sign(nil, digest, opts)
}

// factory programs the old image into app, as a factory programmer does.
func (f *fixture) factory(dev *flash.Emulator) error {
	app, ok := f.layout.Partition(hal.PartApp)
	if !ok {
		return fmt.Errorf("board %s: no app partition", f.board.Name)
	}
	a := int(f.layout.Flash.WriteAlign)
	buf := append([]byte(nil), f.oldImg...)
	for len(buf)%a != 0 {
		buf = append(buf, f.layout.Flash.EraseValue)
	}
	if uint64(len(buf)) > app.Size {
		return fmt.Errorf("board %s: image of %d bytes does not fit app (%d bytes): use a smaller payload", f.board.Name, len(buf), app.Size)
	}
	if err := dev.Program(int64(app.Offset), buf); err != nil {
		return fmt.Errorf("board %s: program the factory image: %w", f.board.Name, err)
	}
	if f.layout.Bootloader == (hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeDirectXIP}) {
		// MCUboot direct-xip erases a slot whose trailer has no magic:
		// the factory programs the image with its trailer confirmed
		// (imgtool sign --pad --confirm: the magic and image_ok).
		l := mcuboot.Layout{Mode: mcuboot.DirectXIP, SlotSize: uint32(app.Size), MaxAlign: max(8, f.layout.Flash.WriteAlign),
			WriteSize: f.layout.Flash.WriteAlign, Erased: f.layout.Flash.EraseValue,
			MaxImgSectors: uint32(f.layout.Flash.Map().Count(app.Offset, app.End()))}
		for _, w := range []mcuboot.Write{l.MagicWrite(), l.ImageOKWrite()} {
			if err := dev.Program(int64(app.Offset)+int64(w.Off), w.Data); err != nil {
				return fmt.Errorf("board %s: program the factory image's trailer: %w", f.board.Name, err)
			}
		}
	}
	return nil
}
