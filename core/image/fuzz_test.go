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
