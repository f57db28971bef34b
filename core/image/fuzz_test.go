package image

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseImage feeds arbitrary bytes to Parse, Verify and the stream
// verifier (saved and restored half way): none may panic, and the two
// verification paths must agree on what they accept. Seeds are in
// testdata/fuzz/FuzzParseImage.
func FuzzParseImage(f *testing.F) {
	f.Add(mustSign(f, []byte{1, 2, 3}, nil, SignOptions{HeaderSize: 0x20}))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, perr := Parse(bytes.NewReader(b), int64(len(b)))
		if perr == nil {
			if img.TotalSize > int64(len(b)) || img.TotalSize < img.Header.HashedSize()+tlvInfoSize {
				t.Fatalf("TotalSize %d outside [%d, %d]", img.TotalSize, img.Header.HashedSize()+tlvInfoSize, len(b))
			}
			if img.HashType == 0 {
				t.Fatal("parsed without a hash TLV")
			}
		} else if !errors.Is(perr, ErrTruncated) && !errors.Is(perr, ErrMalformed) && !errors.Is(perr, ErrNoImage) {
			t.Fatalf("Parse error without a sentinel: %v", perr)
		}
		vimg, verr := Verify(bytes.NewReader(b), int64(len(b)), nil)
		if perr != nil && verr == nil {
			t.Fatalf("Verify accepted what Parse refused: %v", perr)
		}

		v, err := NewStreamVerifier(nil)
		if err != nil {
			t.Fatal(err)
		}
		half := len(b) / 2
		_, serr := v.Write(b[:half])
		if serr == nil {
			state, err := v.MarshalBinary()
			if err != nil {
				t.Fatalf("save: %v", err)
			}
			v, _ = NewStreamVerifier(nil)
			if err := v.UnmarshalBinary(state); err != nil {
				t.Fatalf("restore own state: %v", err)
			}
			_, serr = v.Write(b[half:])
		}
		var simg *Image
		if serr == nil {
			simg, serr = v.Finish()
		}
		// The stream verifier checks a compressed image's outer hash only;
		// Verify also decompresses it, and may refuse what the stream took.
		if (verr == nil) != (serr == nil) && (serr != nil || simg.Compressed == nil) {
			t.Fatalf("Verify: %v; stream: %v", verr, serr)
		}
		if verr == nil && (simg.TotalSize != vimg.TotalSize || !bytes.Equal(simg.Hash, vimg.Hash)) {
			t.Fatalf("stream and Verify disagree: %d %d", simg.TotalSize, vimg.TotalSize)
		}
	})
}

// FuzzStreamState restores arbitrary saved states: no panic, and a state
// that is accepted saves back to the same bytes.
func FuzzStreamState(f *testing.F) {
	b := mustSign(f, testPayload(100), nil, SignOptions{HeaderSize: 0x20, SecurityCounter: ptr[uint32](1)})
	for _, n := range []int{0, 10, 32, 100, len(b) - 3, len(b)} {
		v, _ := NewStreamVerifier(nil)
		v.Write(b[:n])
		s, err := v.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, state []byte) {
		v, _ := NewStreamVerifier(nil)
		if err := v.UnmarshalBinary(state); err != nil {
			return
		}
		again, err := v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, state) {
			t.Fatalf("restored state saves differently")
		}
		v.Write(b)
		v.Finish()
	})
}

// FuzzDecryptImage feeds arbitrary bytes, seeded with encrypted images for
// each key type, to the decrypting verifier with every kind of decryption
// key: no panic, and every error wraps a sentinel callers branch on.
// Seeds are in testdata/fuzz/FuzzDecryptImage (imgtool's encrypted images).
func FuzzDecryptImage(f *testing.F) {
	kek := KEK(bytes.Repeat([]byte{7}, 16))
	decs := []any{encKey(f, "enc-x25519"), encKey(f, "ecdsa-p256"), encKey(f, "rsa-2048"), kek}
	pubs := []any{encPub(f, "enc-x25519.pub"), encPub(f, "ecdsa-p256.pub"), encPub(f, "rsa-2048.pub"), kek}
	for i, pub := range pubs {
		for _, comp := range []string{CompressionNone, CompressionLZMA2} {
			f.Add(mustSign(f, testPayload(300), nil, SignOptions{HeaderSize: 0x20, Encrypt: pub, EncryptKeyLen: 128 << (i % 2), Compression: comp}))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dk := range decs {
			_, err := VerifyWith(bytes.NewReader(b), int64(len(b)), VerifyOptions{DecryptKey: dk})
			if err == nil {
				continue
			}
			ok := false
			for _, s := range []error{ErrTruncated, ErrMalformed, ErrNoImage, ErrUnsupported, ErrHashMismatch, ErrEncrypted, ErrDecryptKey} {
				ok = ok || errors.Is(err, s)
			}
			if !ok {
				t.Fatalf("error without a sentinel: %v", err)
			}
		}
	})
}
