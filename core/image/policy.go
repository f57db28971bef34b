package image

import (
	"crypto"
	"fmt"
	"strings"
)

// KeysOfType returns the keys among keys of type typ (one of KeyTypes): the
// keys a board whose image.signature is typ verifies with. A bootloader is
// built for one signature algorithm; a key of another one, even trusted,
// must not make an image bootable there.
func KeysOfType(keys []crypto.PublicKey, typ string) []crypto.PublicKey {
	var out []crypto.PublicKey
	for _, k := range keys {
		pub := k
		if s, ok := k.(crypto.Signer); ok {
			pub = s.Public()
		}
		if kt, err := KeyType(pub); err == nil && kt == typ {
			out = append(out, k)
		}
	}
	return out
}

// DescribeKeys names each key by its type and the first bytes of its key
// hash ("ed25519 1a2b3c4d"), for messages.
func DescribeKeys(keys []crypto.PublicKey) string {
	ks, err := newKeySet(keys)
	if err != nil {
		return err.Error()
	}
	return ks.describe()
}

// CheckAlgorithm refuses, with ErrAlgorithm, an image that carries
// signatures but none made with a key of type typ (one of KeyTypes). An
// unsigned image passes: whether it may be unsigned is Verify's question.
func (img *Image) CheckAlgorithm(typ string) error {
	return checkAlgorithm(img.TLVs, img.Version, typ)
}

// CheckAreaAlgorithm is CheckAlgorithm over the unprotected TLV area of an
// image of version v, given from its start (Header.HashedSize()) before the
// image is whole: what an installer can read ahead of the payload. b may
// run past the area's end; an area cut short is an error, so a caller that
// read too little learns it.
func CheckAreaAlgorithm(b []byte, v Version, typ string) error {
	tlvs, _, err := parseArea(b, 0, false)
	if err != nil {
		return err
	}
	return checkAlgorithm(tlvs, v, typ)
}

func checkAlgorithm(tlvs []TLV, v Version, typ string) error {
	var others []string
	for _, t := range tlvs {
		if !t.Type.IsSignature() {
			continue
		}
		if t.Type.KeyType() == typ {
			return nil
		}
		others = append(others, t.Type.KeyType())
	}
	if len(others) == 0 {
		return nil
	}
	return fmt.Errorf("image %s is signed with %s, not %s: %w", v, strings.Join(others, ", "), typ, ErrAlgorithm)
}
