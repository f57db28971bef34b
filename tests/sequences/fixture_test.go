package sequences

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/delta"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/core/keyset"
	"github.com/otaport/otaport/ports/cport"
)

// factoryVersion is the image every sequence starts from, provisioned.
const factoryVersion = "1.0.0+0"

// fixture is one catalog board made ready for sequences: its keys, the
// images offered to it (made on first use, then shared by every worker)
// and the flash of a device provisioned with factoryVersion.
type fixture struct {
	name   string
	layout hal.Layout
	dir    string
	// key signs the images the device trusts; other signs the wrong-key
	// images, with the same algorithm, so only trust differs. alien is
	// trusted too, but of another algorithm than the board's
	// image.signature: the board's policy must refuse what it signs.
	key, other, alien crypto.Signer
	alienType         string
	keys              []crypto.PublicKey
	pubFile           string
	http              *http.Client

	mu     sync.Mutex
	images map[string]string // file name -> path

	base *flash.Emulator // provisioned; every sequence runs on a clone
	// cport: the commands run on the C port (ports/cport).
	cport bool
}

// newFixture makes keys of the board's own signature type (so that the
// board's image policy holds for the good images), writes the public key
// where otarun's --key would read it and provisions a device.
func newFixture(ctx context.Context, name string, l hal.Layout, dir string, cport bool) (*fixture, error) {
	f := &fixture{name: name, layout: l, dir: filepath.Join(dir, name), images: map[string]string{}, http: &http.Client{}, cport: cport}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	if f.key, err = image.GenerateKey(l.Signature); err != nil {
		return nil, fmt.Errorf("board %s: key: %w", name, err)
	}
	if f.other, err = image.GenerateKey(l.Signature); err != nil {
		return nil, fmt.Errorf("board %s: key: %w", name, err)
	}
	f.alienType = "ed25519"
	if l.Signature == "ed25519" {
		f.alienType = "ecdsa-p256"
	}
	if f.alien, err = image.GenerateKey(f.alienType); err != nil {
		return nil, fmt.Errorf("board %s: key: %w", name, err)
	}
	f.keys = []crypto.PublicKey{f.key.Public(), f.alien.Public()}
	pem, err := image.MarshalPublicKeyPEM(f.key.Public())
	if err != nil {
		return nil, err
	}
	f.pubFile = filepath.Join(f.dir, "pub.pem")
	if err := os.WriteFile(f.pubFile, pem, 0o644); err != nil {
		return nil, err
	}
	factory, err := f.image(imgGood, factoryVersion)
	if err != nil {
		return nil, err
	}
	dev, err := flash.NewMemoryWith(l.Flash, flash.Options{Strict: true})
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", name, err)
	}
	pl, err := f.platform(dev)
	if err != nil {
		return nil, err
	}
	st, err := agent.Provision(ctx, pl, []string{f.pubFile}, factory, nil)
	if err != nil {
		return nil, fmt.Errorf("board %s: provision: %w", name, err)
	}
	if st.RunningVersion != factoryVersion {
		return nil, fmt.Errorf("board %s: provisioned, but %q runs", name, st.RunningVersion)
	}
	f.base = dev
	return f, nil
}

// devicePort is a board's port as the commands use it: core/boot's
// Platform (the Go port) or ports/cport's (the C port).
type devicePort interface {
	hal.Platform
	hal.KV
	hal.Rebooter
	hal.SlotReader // delta images read the running slot
	Close() error
}

// platform is the port a command opens: a fresh port over the flash, as
// each otarun command starts the board's plugin afresh; the C port when the
// fixture runs on it (OTAPORT_SEQUENCES_PORT=c).
func (f *fixture) platform(dev *flash.Emulator) (devicePort, error) {
	var pl devicePort
	var err error
	if f.cport {
		pl, err = cport.New(f.layout, dev, boot.Options{Keys: f.keys})
	} else {
		pl, err = boot.NewPlatform(f.layout, dev, boot.Options{Keys: f.keys})
	}
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", f.name, err)
	}
	return pl, nil
}

// maxImage is the largest image the board takes (its smaller slot, and
// app on single-bank, which ota is copied over).
func (f *fixture) maxImage() uint64 {
	app, _ := f.layout.Partition(hal.PartApp)
	ota, _ := f.layout.Partition(hal.PartOTA)
	return min(app.Size, ota.Size)
}

// imageName is the file name of an image of kind k and version v, the
// name the printed otarun commands use.
func imageName(k imageKind, v string) string {
	return fmt.Sprintf("%s-%s.img", k.file(), strings.TrimSuffix(v, "+0"))
}

// image returns the path of the image of kind k and version v, making it
// on first use. Images are small (1 to 5 KiB) so that a step costs little;
// an oversized one is one byte larger than the board takes.
func (f *fixture) image(k imageKind, v string) (string, error) {
	name := imageName(k, v)
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.images[name]; ok {
		return p, nil
	}
	b, err := f.sign(k, v)
	if err != nil {
		return "", err
	}
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", err
	}
	f.images[name] = p
	return p, nil
}

// sign returns the bytes of the image of kind k and version v. A delta
// image is made from the factory image, the very bytes provisioned (an
// ECDSA signature differs at each signing), to a good image of version v.
func (f *fixture) sign(k imageKind, v string) ([]byte, error) {
	if k == imgDelta {
		p, ok := f.images[imageName(imgGood, factoryVersion)]
		if !ok {
			return nil, fmt.Errorf("board %s: a delta before the factory image is made", f.name)
		}
		base, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		target, err := f.sign(imgGood, v)
		if err != nil {
			return nil, err
		}
		bi, err := image.Parse(bytes.NewReader(base), int64(len(base)))
		if err != nil {
			return nil, err
		}
		ti, err := image.Parse(bytes.NewReader(target), int64(len(target)))
		if err != nil {
			return nil, err
		}
		patch, err := delta.Encode(base, target, delta.Options{BlockLog: delta.MinBlockLog})
		if err != nil {
			return nil, err
		}
		return image.SignDelta(bi, ti, patch, f.key, image.SignOptions{ErasedZero: f.layout.Flash.EraseValue == 0})
	}
	name := imageName(k, v)
	ver, err := image.ParseVersion(v)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte(f.name + " " + name))
	n := 1024 + int(binary.LittleEndian.Uint32(h[:])%4096)
	if k == imgOversized {
		n = int(f.maxImage()) + 1
	}
	payload := make([]byte, n)
	_, _ = rand.NewChaCha8(h).Read(payload)
	key := f.key
	switch k {
	case imgWrongKey:
		key = f.other
	case imgWrongAlg:
		key = f.alien
	}
	b, err := image.Sign(payload, key, image.SignOptions{Version: ver, ErasedZero: f.layout.Flash.EraseValue == 0})
	if err != nil {
		return nil, fmt.Errorf("board %s: sign %s: %w", f.name, name, err)
	}
	if k == imgTampered {
		// One bit of the payload, after signing: hash and signature
		// no longer match.
		b[image.DefaultHeaderSize+n/2] ^= 0x10
	}
	return b, nil
}

// keySetRevokes is the first version of the fixture's key sets that
// revokes alien.
const keySetRevokes = 3

// keySet returns the key set of version v, signed with key: up to
// keySetRevokes-1 it trusts key and alien, as the device does without a
// set; from keySetRevokes on it trusts key alone and revokes alien. alien
// only ever signs images of another algorithm than the board's, which are
// refused with or without it, so no set changes what the model expects:
// the step proves that taking sets, a write to params beside the boot
// request, never leaves the device unbootable, and that the bootloader
// boots with the set it finds.
func (f *fixture) keySet(v int) ([]byte, error) {
	sp := keyset.Spec{Version: uint64(v), Roots: []crypto.PublicKey{f.key.Public()}, ImageKeys: f.keys}
	if v >= keySetRevokes {
		sp.ImageKeys = []crypto.PublicKey{f.key.Public()}
		sp.Revoked = []crypto.PublicKey{f.alien.Public()}
	}
	raw, err := keyset.Sign(sp, f.key)
	if err != nil {
		return nil, fmt.Errorf("board %s: key set %d: %w", f.name, v, err)
	}
	return raw, nil
}

func keySetName(v int) string { return fmt.Sprintf("keyset-v%d.json", v) }

func keySetDesc(v int) string {
	if v >= keySetRevokes {
		return "trusts pub.pem, revokes alien.pem"
	}
	return "trusts pub.pem and alien.pem"
}
