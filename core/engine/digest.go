package engine

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Digest is the hash of the whole downloaded file that an order announces
// (the Alibaba Cloud OTA message's sign and signMethod): it is checked on
// top of the image's own hash and signature, so a file swapped on the
// server is caught even before the signature is looked at.
type Digest struct {
	// Alg is "sha256" or "md5".
	Alg string
	// Sum is the expected hash.
	Sum []byte
}

// ParseDigest reads "sha256:HEX" or "md5:HEX" (hex in either case, as the
// cloud sends upper case). An empty string is no digest: a zero Digest.
func ParseDigest(s string) (Digest, error) {
	if s == "" {
		return Digest{}, nil
	}
	alg, hx, ok := strings.Cut(s, ":")
	if !ok {
		return Digest{}, fmt.Errorf("digest %q: want sha256:HEX or md5:HEX", s)
	}
	alg = strings.ToLower(strings.TrimSpace(alg))
	var size int
	switch alg {
	case "sha256", "sha-256":
		alg, size = "sha256", sha256.Size
	case "md5":
		size = md5.Size
	default:
		return Digest{}, fmt.Errorf("digest %q: algorithm %q: want sha256 or md5", s, alg)
	}
	sum, err := hex.DecodeString(strings.TrimSpace(hx))
	if err != nil || len(sum) != size {
		return Digest{}, fmt.Errorf("digest %q: want %d hex digits after %q", s, 2*size, alg+":")
	}
	return Digest{Alg: alg, Sum: sum}, nil
}

// IsZero reports whether d is no digest.
func (d Digest) IsZero() bool { return d.Alg == "" }

// String formats d as ParseDigest reads it, hex in lower case.
func (d Digest) String() string {
	if d.IsZero() {
		return ""
	}
	return d.Alg + ":" + hex.EncodeToString(d.Sum)
}

// newHash returns the running hash of d's algorithm, nil for no digest.
func (d Digest) newHash() hash.Hash {
	switch d.Alg {
	case "sha256":
		return sha256.New()
	case "md5":
		return md5.New()
	}
	return nil
}

// restore returns the hash of d's algorithm in the saved state st (from a
// checkpoint), or a fresh one when st is empty.
func (d Digest) restore(st []byte) (hash.Hash, error) {
	h := d.newHash()
	if h == nil || len(st) == 0 {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st); err != nil {
		return nil, fmt.Errorf("restore %s digest state: %w", d.Alg, err)
	}
	return h, nil
}

// check compares the final hash with d.
func (d Digest) check(h hash.Hash) error {
	if h == nil {
		return nil
	}
	if got := h.Sum(nil); !bytes.Equal(got, d.Sum) {
		return fmt.Errorf("%w: the file's %s is %s, the order announced %s: the file on the server is not the one the order is for",
			ErrVerify, d.Alg, hex.EncodeToString(got), hex.EncodeToString(d.Sum))
	}
	return nil
}

// saveHash returns the state of h for a checkpoint, nil for no hash.
func saveHash(h hash.Hash) ([]byte, error) {
	if h == nil {
		return nil, nil
	}
	return h.(encoding.BinaryMarshaler).MarshalBinary()
}
