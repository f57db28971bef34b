package image

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// deltaPair signs a base and a target image and a delta image between them
// whose payload is an opaque stand-in for a patch: this package carries the
// patch, core/delta makes and applies it.
func deltaPair(t *testing.T) (base, target, d []byte) {
	t.Helper()
	key := testKey(t, KeyEd25519)
	base = mustSign(t, testPayload(3000), key, SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x20})
	tp := testPayload(3100)
	tp[7] ^= 1
	target = mustSign(t, tp, key, SignOptions{Version: Version{1, 1, 0, 0}, HeaderSize: 0x20, SecurityCounter: ptr[uint32](3)})
	bi, err := verifyBytes(base)
	if err != nil {
		t.Fatal(err)
	}
	ti, err := verifyBytes(target)
	if err != nil {
		t.Fatal(err)
	}
	d, err = SignDelta(bi, ti, []byte("patch bytes"), key, SignOptions{HeaderSize: 0x20})
	if err != nil {
		t.Fatal(err)
	}
	return base, target, d
}

func TestSignDelta_CarriesBaseAndTarget(t *testing.T) {
	base, target, d := deltaPair(t)
	key := testKey(t, KeyEd25519)
	img, err := verifyBytes(d, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	bi, _ := verifyBytes(base)
	ti, _ := verifyBytes(target, key.Public())
	if img.Delta == nil {
		t.Fatal("no Delta parsed from a delta image")
	}
	if !bytes.Equal(img.Delta.BaseHash, bi.Hash) || !bytes.Equal(img.Delta.TargetHash, ti.Hash) || int64(img.Delta.TargetSize) != ti.TotalSize {
		t.Fatalf("delta names base %x, target %x (%d bytes); want %x, %x (%d)", img.Delta.BaseHash, img.Delta.TargetHash, img.Delta.TargetSize, bi.Hash, ti.Hash, ti.TotalSize)
	}
	if img.Delta.TargetSigType != TLVEd25519 {
		t.Fatalf("target signature TLV %s, want ED25519", img.Delta.TargetSigType)
	}
	if img.Version != ti.Version || !img.HasSecurityCounter || img.SecurityCounter != 3 {
		t.Fatalf("delta version %s counter %d, want the target's %s and 3", img.Version, img.SecurityCounter, ti.Version)
	}
	if img.Header.Flags != FlagDelta|FlagNonBootable {
		t.Fatalf("flags %s, want NON_BOOTABLE|OTAPORT_DELTA", img.Header.FlagString())
	}
	payload := d[img.Header.HeaderSize:img.Header.PayloadEnd()]
	if string(payload) != "patch bytes" {
		t.Fatalf("payload %q", payload)
	}
	if err := img.CheckDeltaTarget(ti); err != nil {
		t.Fatalf("the right target refused: %v", err)
	}
	if err := img.CheckDeltaTarget(bi); err == nil || !strings.Contains(err.Error(), "the delta names") {
		t.Fatalf("another target accepted: %v", err)
	}
}

func TestSignDelta_RefusesDeltaAsBase(t *testing.T) {
	_, target, d := deltaPair(t)
	di, _ := verifyBytes(d)
	ti, _ := verifyBytes(target)
	if _, err := SignDelta(di, ti, nil, nil, SignOptions{}); err == nil {
		t.Fatal("a delta image accepted as the base of a delta")
	}
}

// TestParse_RefusesMalformedDelta builds delta images that break one rule
// each; Parse must refuse every one as malformed.
func TestParse_RefusesMalformedDelta(t *testing.T) {
	key := testKey(t, KeyEd25519)
	tlv := func(typ TLVType, v []byte) []byte { return appendTLV(nil, typ, v) }
	full := func() [][]byte {
		return [][]byte{
			tlv(TLVDeltaBase, make([]byte, 32)),
			tlv(TLVDeltaTargetSize, binary.LittleEndian.AppendUint32(nil, 100)),
			tlv(TLVDeltaTargetSHA, make([]byte, 32)),
		}
	}
	for _, tc := range []struct {
		name  string
		flags uint32
		prot  [][]byte
		want  string
	}{
		{"delta TLVs without the flag", FlagNonBootable, full(), "do not say OTAPORT_DELTA"},
		{"flag without NON_BOOTABLE", FlagDelta, full(), "must also be NON_BOOTABLE"},
		{"no base TLV", FlagDelta | FlagNonBootable, full()[1:], "needs a OTAPORT_DELTA_BASE TLV"},
		{"short target size", FlagDelta | FlagNonBootable, append(full()[:1], tlv(TLVDeltaTargetSize, []byte{1}), full()[2]), "OTAPORT_DELTA_TARGET_SIZE"},
		{"two bases", FlagDelta | FlagNonBootable, append(full(), full()[0]), "a second one"},
		{"signature of no known type", FlagDelta | FlagNonBootable, append(full(), tlv(TLVDeltaTargetSig, []byte{0x10, 0, 1})), "OTAPORT_DELTA_TARGET_SIG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x20}
			hs, erased, kt, err := opts.prepare(key)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, hs, hs+4)
			buf = append(buf, 1, 2, 3, 4)
			b, err := assemble(buf, hs, erased, key, kt, opts, tc.flags, bytes.Join(tc.prot, nil))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(bytes.NewReader(b), int64(len(b)))
			wantErr(t, err, ErrMalformed)
			if err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
