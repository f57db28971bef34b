package image

import (
	"crypto"
	"encoding/binary"
	"fmt"
)

// FlagDelta marks an otaport delta image: the payload is a patch (the format
// of core/delta) that rebuilds a target image from the base image the device
// runs. It is not an MCUboot flag: MCUboot leaves bit 16 unused. A delta
// image also carries NON_BOOTABLE, so that a bootloader or an engine that
// does not know deltas refuses it instead of booting a patch.
const FlagDelta = 0x00010000

// Delta image TLVs, in the protected area, from the vendor range MCUboot
// leaves to users (0xa0..0xfffe).
const (
	// TLVDeltaBase is the hash TLV (SHA256) of the base image.
	TLVDeltaBase TLVType = 0xd0
	// TLVDeltaTargetSize is the target image's total size, u32
	// little-endian: header, payload and both TLV areas.
	TLVDeltaTargetSize TLVType = 0xd1
	// TLVDeltaTargetSHA is the target image's hash TLV (SHA256).
	TLVDeltaTargetSHA TLVType = 0xd2
	// TLVDeltaTargetSig is the target's first signature TLV: its type,
	// u16 little-endian, then its value. Absent for an unsigned target.
	TLVDeltaTargetSig TLVType = 0xd3
)

// Delta is what a delta image's TLVs say of its base and its target.
type Delta struct {
	BaseHash   []byte
	TargetSize uint32
	TargetHash []byte
	// TargetSigType is 0 when the target is unsigned.
	TargetSigType TLVType
	TargetSig     []byte
}

func isDeltaTLV(t TLVType) bool { return t >= TLVDeltaBase && t <= TLVDeltaTargetSig }

// SignDelta makes a delta image: patch as payload, the base's hash and the
// target's size, hash and signature as protected TLVs, signed with key. The
// version and security counter are the target's. opts gives the header size,
// the erased value and the key format; its version is ignored.
func SignDelta(base, target *Image, patch []byte, key crypto.Signer, opts SignOptions) ([]byte, error) {
	if base.Header.Flags&FlagDelta != 0 || target.Header.Flags&FlagDelta != 0 {
		return nil, fmt.Errorf("sign delta: base and target must be full images, not deltas")
	}
	if base.HashType != TLVSHA256 || target.HashType != TLVSHA256 {
		return nil, fmt.Errorf("sign delta: base (%s) and target (%s) must carry SHA256 hash TLVs", base.HashType, target.HashType)
	}
	if target.TotalSize > 1<<32-1 {
		return nil, fmt.Errorf("sign delta: target of %d bytes does not fit the u32 size TLV", target.TotalSize)
	}
	opts.Version = target.Version
	opts.NonBootable = true
	opts.HeaderIncluded = false
	opts.SecurityCounter = nil
	if target.HasSecurityCounter {
		sc := target.SecurityCounter
		opts.SecurityCounter = &sc
	}
	hs, erased, kt, err := opts.prepare(key)
	if err != nil {
		return nil, err
	}
	var prot []byte
	prot = appendTLV(prot, TLVDeltaBase, base.Hash)
	prot = appendTLV(prot, TLVDeltaTargetSize, binary.LittleEndian.AppendUint32(nil, uint32(target.TotalSize)))
	prot = appendTLV(prot, TLVDeltaTargetSHA, target.Hash)
	for _, t := range target.TLVs {
		if t.Type.IsSignature() {
			prot = appendTLV(prot, TLVDeltaTargetSig, append(binary.LittleEndian.AppendUint16(nil, uint16(t.Type)), t.Value...))
			break
		}
	}
	buf := make([]byte, hs, hs+len(patch))
	fill(buf, erased)
	buf = append(buf, patch...)
	return assemble(buf, hs, erased, key, kt, opts, FlagDelta, prot)
}

// interpretDelta fills img.Delta from the protected TLVs of a delta image,
// and refuses delta TLVs where they do not belong.
func (img *Image) interpretDelta() error {
	at := func(t TLV) int64 { return t.Offset - tlvHeaderSize }
	if err := img.refuseUnprotected(isDeltaTLV); err != nil {
		return err
	}
	h := img.Header
	if h.Flags&FlagDelta == 0 {
		for _, t := range img.ProtectedTLVs {
			if isDeltaTLV(t.Type) {
				return fmt.Errorf("TLV %s at 0x%x: describes a delta, but the header flags (%s) do not say OTAPORT_DELTA: %w", t.Type, at(t), h.FlagString(), ErrMalformed)
			}
		}
		return nil
	}
	if h.Flags&FlagNonBootable == 0 {
		return fmt.Errorf("image header: flags %s: a delta image must also be NON_BOOTABLE: %w", h.FlagString(), ErrMalformed)
	}
	if h.Flags&(FlagCompressedLZMA2|FlagEncryptedAES128|FlagEncryptedAES256) != 0 {
		return fmt.Errorf("image header: flags %s: a delta image is neither compressed nor encrypted (the patch is compressed already): %w", h.FlagString(), ErrMalformed)
	}
	d := &Delta{}
	seen := map[TLVType]bool{}
	for _, t := range img.ProtectedTLVs {
		if !isDeltaTLV(t.Type) {
			continue
		}
		if seen[t.Type] {
			return fmt.Errorf("TLV %s at 0x%x: a second one: %w", t.Type, at(t), ErrMalformed)
		}
		seen[t.Type] = true
		bad := false
		switch t.Type {
		case TLVDeltaBase:
			d.BaseHash, bad = t.Value, len(t.Value) != 32
		case TLVDeltaTargetSize:
			if bad = len(t.Value) != 4; !bad {
				d.TargetSize = binary.LittleEndian.Uint32(t.Value)
			}
		case TLVDeltaTargetSHA:
			d.TargetHash, bad = t.Value, len(t.Value) != 32
		case TLVDeltaTargetSig:
			if bad = len(t.Value) < 3; !bad {
				d.TargetSigType, d.TargetSig = TLVType(binary.LittleEndian.Uint16(t.Value)), t.Value[2:]
				bad = !d.TargetSigType.IsSignature()
			}
		}
		if bad {
			return fmt.Errorf("TLV %s at 0x%x: length %d or value invalid: %w", t.Type, at(t), len(t.Value), ErrMalformed)
		}
	}
	for _, t := range []TLVType{TLVDeltaBase, TLVDeltaTargetSize, TLVDeltaTargetSHA} {
		if !seen[t] {
			return fmt.Errorf("protected TLV area: a delta image needs a %s TLV: %w", t, ErrMalformed)
		}
	}
	img.Delta = d
	return nil
}

// CheckDeltaTarget checks a target rebuilt from this delta image: the target
// must be the size and carry the hash and signature the delta names, so that
// the signed delta vouches for exactly that image. The target's own
// signature is checked by verifying it as a full image.
func (img *Image) CheckDeltaTarget(target *Image) error {
	d := img.Delta
	if d == nil {
		return fmt.Errorf("image %s is not a delta image", img.Version)
	}
	if target.TotalSize != int64(d.TargetSize) || string(target.Hash) != string(d.TargetHash) {
		return fmt.Errorf("delta target: %d bytes with hash %x, the delta names %d bytes with hash %x: %w",
			target.TotalSize, target.Hash, d.TargetSize, d.TargetHash, ErrHashMismatch)
	}
	if d.TargetSigType != 0 {
		sig, ok := target.Find(d.TargetSigType)
		if !ok || string(sig.Value) != string(d.TargetSig) {
			return fmt.Errorf("delta target: its %s signature is not the one the delta carries: %w", d.TargetSigType, ErrHashMismatch)
		}
	}
	return nil
}
