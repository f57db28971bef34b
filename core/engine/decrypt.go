package engine

import (
	"context"
	"fmt"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// An encrypted image (imgtool -E) is hashed and signed over its plain
// payload, and the key that decrypts it is wrapped in a TLV at its end. So
// that the stream verifier checks it as it arrives, the engine reads that
// TLV ahead of the payload (as probeAlgorithm reads the signature),
// unwraps the AES key with the device's private key and decrypts each
// chunk before the verifier hashes it. AES-CTR decrypts at any offset, so
// a resumed download only reads the key TLV again: the key itself is
// never stored.
//
// What the slot keeps depends on the bootloader. MCUboot decrypts the
// images that carry the encrypted flag as it copies or swaps them into
// the primary slot, so on an MCUboot board the slot keeps the ciphertext
// as received (it may be external flash, which is what the encryption is
// for). otaport's own bootloader and ESP-IDF's do not decrypt: there the
// slot gets the plain payload, under the header and TLVs as signed (the
// encrypted flag and the key TLV stay, the hash covers them), which is
// what MCUboot's primary slot holds after its swap.

// slotKeepsCiphertext reports whether the update slot of dev takes an
// encrypted image as received: its bootloader decrypts it.
func slotKeepsCiphertext(dev device) bool {
	return dev.info.Layout.Bootloader.Name == hal.BootloaderMCUboot
}

// decryptor decrypts the payload of one download.
type decryptor struct {
	c *image.PayloadCipher
	// plain says the slot gets the plain payload.
	plain bool
	// scratch holds the plain bytes for the verifier when the slot gets
	// the ciphertext.
	scratch []byte
}

// apply returns the plain form of data, the bytes at image offset off:
// data itself, decrypted in place, when the slot takes plain bytes.
func (d *decryptor) apply(data []byte, off int64) []byte {
	if d.plain {
		d.c.XORKeyStreamAt(data, data, off)
		return data
	}
	if cap(d.scratch) < len(data) {
		d.scratch = make([]byte, len(data))
	}
	out := d.scratch[:len(data)]
	d.c.XORKeyStreamAt(out, data, off)
	return out
}

// prepareDecrypt sets up the decryption of an encrypted image, with the
// first chunk of this pass (at image offset off) in data: the header comes
// from the verifier when the download resumes, else from data. An image
// that is not encrypted, or whose header does not parse (the verifier says
// why), needs nothing.
func (t *transfer) prepareDecrypt(ctx context.Context, data []byte, off int64, v validators) error {
	hdr, ok := t.v.Header()
	if !ok {
		if off != 0 || len(data) < image.HeaderSize {
			return nil
		}
		h, err := image.ParseHeader(data)
		if err != nil {
			return nil
		}
		hdr = h
	}
	if hdr.Flags&(image.FlagEncryptedAES128|image.FlagEncryptedAES256) == 0 {
		return nil
	}
	if t.e.opts.DecryptKey == nil {
		return fmt.Errorf("%w: image %s is encrypted (flags %s) and the device has no decryption key: give its private key (otarun install --enc-key PRIV.pem, device.yaml enc_key)",
			ErrRefused, hdr.Version, hdr.FlagString())
	}
	if b := t.dev.info.Layout.Bootloader; b.Name == hal.BootloaderMCUboot && b.Mode == hal.ModeDirectXIP {
		return fmt.Errorf("%w: image %s is encrypted, and %s runs images in place: it cannot decrypt them (imgtool: encryption is not supported in direct-xip mode); sign it without --encrypt for this board",
			ErrRefused, hdr.Version, b)
	}
	compressed := hdr.Flags&image.FlagCompressedLZMA2 != 0
	if compressed && slotKeepsCiphertext(t.dev) {
		return fmt.Errorf("%w: image %s is compressed and encrypted: otaport decompresses it into the slot, and %s (the board's bootloader) would then find the encrypted flag on a plain image it cannot decrypt; sign it without --compression for this board",
			ErrRefused, hdr.Version, t.dev.info.Layout.Bootloader)
	}
	enc, err := t.readKeyTLV(ctx, hdr, v)
	if err != nil {
		return err
	}
	key, err := enc.Unwrap(t.e.opts.DecryptKey)
	if err != nil {
		return fmt.Errorf("%w: image %s: %w", ErrVerify, hdr.Version, err)
	}
	c, err := image.NewPayloadCipher(hdr, key)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVerify, err)
	}
	t.dec = &decryptor{c: c, plain: compressed || !slotKeepsCiphertext(t.dev)}
	t.v.SetDecrypted(enc)
	return nil
}

// readKeyTLV reads the unprotected TLV area of the image with header hdr
// ahead of the stream and returns its encryption.
func (t *transfer) readKeyTLV(ctx context.Context, hdr image.Header, v validators) (*image.Encryption, error) {
	tail, err := t.readTail(ctx, hdr, v, "an encrypted image's key TLV")
	if err != nil {
		return nil, err
	}
	enc, err := image.AreaEncryption(hdr, tail[hdr.ProtectedTLVSize:])
	if err != nil {
		return nil, fmt.Errorf("%w: image %s: %w", ErrVerify, hdr.Version, err)
	}
	if enc == nil {
		return nil, fmt.Errorf("%w: image %s: flags %s but no key TLV", ErrVerify, hdr.Version, hdr.FlagString())
	}
	return enc, nil
}
