package boot

import (
	"crypto"
	"errors"
	"fmt"
	"io"

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
	p := b.slots[s]
	rr := &readRecorder{r: r}
	img, err := image.Verify(io.NewSectionReader(rr, int64(p.Offset), int64(p.Size)), int64(p.Size), keys)
	if rr.err != nil {
		return slotImage{}, flashErr(fmt.Sprintf("read %s", p.Name), rr.err)
	}
	if err != nil {
		if img == nil {
			return slotImage{err: fmt.Errorf("image in %s: %w", p.Name, err)}, nil
		}
		return slotImage{img: img, err: fmt.Errorf("image %s in %s: %w", img.Version, p.Name, err)}, nil
	}
	if img.SecurityCounter < minCounter {
		return slotImage{img: img, err: fmt.Errorf("image %s in %s: security counter %d is below the device's %d (a downgrade the device refuses)", img.Version, p.Name, img.SecurityCounter, minCounter)}, nil
	}
	return slotImage{img: img}, nil
}

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
