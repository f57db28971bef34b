package boot

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// slotImage is what a slot holds, as the bootloader sees it.
type slotImage struct {
	img *image.Image // nil when the slot holds no image that parses
	err error        // why the slot is not bootable; nil when it is
}

// bootable reports whether the slot may be booted.
func (si slotImage) bootable() bool { return si.img != nil && si.err == nil }

func (si slotImage) version() string {
	if si.img == nil {
		return ""
	}
	return si.img.Version.String()
}

// checkSlot verifies the image in slot s: structure, SHA-256, signature with
// keys (hash only without keys), and a security counter not below minCounter.
// The error is a failure to read the flash, kept apart from an invalid
// image: a read that fails (a power cut) must not make the bootloader drop an
// upgrade request or a port answer "no image".
func checkSlot(r io.ReaderAt, b *board, s Slot, keys []crypto.PublicKey, minCounter uint32) (slotImage, error) {
	si, err := verifySlot(r, b, s, keys)
	if err != nil {
		return slotImage{}, err
	}
	return si.withCounter(b, s, minCounter), nil
}

// verifySlot is checkSlot without the security counter: what depends only
// on the bytes of the slot and the keys, which is what a Platform caches.
func verifySlot(r io.ReaderAt, b *board, s Slot, keys []crypto.PublicKey) (slotImage, error) {
	p := b.slots[s]
	rr := &readRecorder{r: r}
	// The bootloader is built for the board's signature algorithm: a key
	// of another one, even among the keys, verifies nothing here.
	alg := b.layout.Signature
	given := keys
	if alg != "" && len(keys) > 0 {
		keys = image.KeysOfType(keys, alg)
	}
	// An encrypted image is plain in every slot this bootloader boots
	// from, its flag and key TLV kept (see encryptedPlain).
	img, err := image.VerifyWith(io.NewSectionReader(rr, int64(p.Offset), int64(p.Size)), int64(p.Size),
		image.VerifyOptions{Keys: keys, Decrypted: b.encryptedPlain(s), DecryptKey: b.decKey})
	if rr.err != nil {
		return slotImage{}, flashErr(fmt.Sprintf("read %s", p.Name), rr.err)
	}
	if img != nil && len(given) > 0 && alg != "" {
		if aerr := img.CheckAlgorithm(alg); aerr != nil {
			err = fmt.Errorf("board %s takes %s images only (image.signature): %w", b.layout.Board, alg, aerr)
		} else if err == nil && len(keys) == 0 {
			// No key of the board's algorithm: Verify checked the hash
			// only, which must not make an image bootable.
			err = fmt.Errorf("board %s takes %s images and none of its keys (%s) is %s: %w", b.layout.Board, alg, image.DescribeKeys(given), alg, image.ErrUnknownKey)
		}
	}
	if err != nil {
		if img == nil {
			return slotImage{err: fmt.Errorf("image in %s: %w", p.Name, err)}, nil
		}
		return slotImage{img: img, err: fmt.Errorf("image %s in %s: %w", img.Version, p.Name, err)}, nil
	}
	return slotImage{img: img}, nil
}

// encryptedPlain reports whether an encrypted image (imgtool -E) in slot s
// holds its payload plain. otaport's own bootloader and ESP-IDF's do not
// decrypt: the engine writes the payload decrypted. MCUboot decrypts the
// secondary slot's image into the primary as it swaps it (see swapCrypt)
// or copies it over (overwrite-only, see copyOverwrite),
// so its primary holds the plain payload, flag and key TLV kept, and its
// secondary the ciphertext, which it checks decrypted with its key
// (Options.DecryptKey); without one such an image is refused as encrypted
// (image.ErrEncrypted), as MCUboot built without encryption refuses it.
func (b *board) encryptedPlain(s Slot) bool {
	return b.layout.Bootloader.Name != hal.BootloaderMCUboot || s == SlotApp
}

// withCounter refuses an otherwise bootable image whose security counter is
// below minCounter.
func (si slotImage) withCounter(b *board, s Slot, minCounter uint32) slotImage {
	if !si.bootable() || si.img.SecurityCounter >= minCounter {
		return si
	}
	return slotImage{img: si.img, err: fmt.Errorf("image %s in %s: security counter %d is below the device's %d (a downgrade the device refuses)",
		si.img.Version, b.slots[s].Name, si.img.SecurityCounter, minCounter)}
}

// slotCache holds a Platform's verification of each slot, so that Describe,
// SetBoot and Rollback do not hash an unchanged slot again: hashing a large
// slot costs far more than any of those calls otherwise does. An entry is
// valid only while nothing has erased or programmed its slot through the
// Platform; the Platform drops it before any such operation (whether or not
// the operation succeeds) and drops them all at a power-on, since a real
// bootloader keeps nothing across a reset. The security counter is not part
// of an entry: it is checked at each use, so raising it needs no
// invalidation. The keys are the Platform's, fixed at NewPlatform.
//
// A write to the flash that bypasses the Platform (another program, a test
// poking the device) is not seen until the next power-on, which verifies
// every slot it boots from the flash itself.
type slotCache struct {
	valid [2]bool
	si    [2]slotImage
}

// check returns slot s verified with keys and checked against minCounter,
// from the cache when the slot is unchanged since it was last verified. A
// failure to read the flash is not cached.
func (c *slotCache) check(r io.ReaderAt, b *board, s Slot, keys []crypto.PublicKey, minCounter uint32) (slotImage, error) {
	if !c.valid[s] {
		si, err := verifySlot(r, b, s, keys)
		if err != nil {
			return slotImage{}, err
		}
		c.valid[s], c.si[s] = true, si
	}
	return c.si[s].withCounter(b, s, minCounter), nil
}

// drop forgets the verification of slot s: call it before erasing or
// programming any byte of s.
func (c *slotCache) drop(s Slot) { c.valid[s], c.si[s] = false, slotImage{} }

// reset forgets every slot: a power-on.
func (c *slotCache) reset() { *c = slotCache{} }

// readRecorder remembers the first error of the device under a reader.
type readRecorder struct {
	r   io.ReaderAt
	err error
}

func (rr *readRecorder) ReadAt(p []byte, off int64) (int, error) {
	n, err := rr.r.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) && rr.err == nil {
		rr.err = err
	}
	return n, err
}

// isErased reports whether every byte of b is the erased value, eight bytes
// at a time: it runs over every chunk a port writes and over the params
// partition at each load.
func isErased(b []byte, erase byte) bool {
	w := uint64(erase) * 0x0101010101010101
	for len(b) >= 32 {
		if binary.LittleEndian.Uint64(b) != w || binary.LittleEndian.Uint64(b[8:]) != w ||
			binary.LittleEndian.Uint64(b[16:]) != w || binary.LittleEndian.Uint64(b[24:]) != w {
			return false
		}
		b = b[32:]
	}
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != w {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != erase {
			return false
		}
	}
	return true
}
