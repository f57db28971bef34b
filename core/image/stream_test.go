package image

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"testing"
)

// TestStream_ResumeAtEveryOffset saves the verifier after every byte count
// of a small padded image, restores it into a fresh verifier and finishes
// the stream there: every resume point must verify, as the engine resumes
// after a restart wherever the download stopped.
func TestStream_ResumeAtEveryOffset(t *testing.T) {
	key := testKey(t, KeyEd25519)
	b := mustSign(t, testPayload(200), key, SignOptions{HeaderSize: 0x40, SecurityCounter: ptr[uint32](3), Pad: true, SlotSize: 0x200, Trailer: TrailerOptions{OverwriteOnly: true}})
	want, err := verifyBytes(b, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k <= len(b); k++ {
		v, err := NewStreamVerifier([]crypto.PublicKey{key.Public()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Write(b[:k]); err != nil {
			t.Fatalf("write %d: %v", k, err)
		}
		state, err := v.MarshalBinary()
		if err != nil {
			t.Fatalf("save at %d: %v", k, err)
		}
		r, err := NewStreamVerifier([]crypto.PublicKey{key.Public()})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.UnmarshalBinary(state); err != nil {
			t.Fatalf("restore at %d: %v", k, err)
		}
		if r.Written() != int64(k) {
			t.Fatalf("restored at %d, Written = %d", k, r.Written())
		}
		if _, err := r.Write(b[k:]); err != nil {
			t.Fatalf("resume at %d: %v", k, err)
		}
		img, err := r.Finish()
		if err != nil {
			t.Fatalf("finish after resume at %d: %v", k, err)
		}
		if img.TotalSize != want.TotalSize || img.SecurityCounter != 3 || img.Signer == nil {
			t.Fatalf("resume at %d: %+v", k, img)
		}
		// A verifier that goes on without a restore must agree.
		if _, err := v.Write(b[k:]); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Finish(); err != nil {
			t.Fatalf("finish without restore at %d: %v", k, err)
		}
	}
}

func TestStream_RestoreRefusesDamagedState(t *testing.T) {
	b := mustSign(t, testPayload(100), nil, SignOptions{HeaderSize: 0x20})
	v, _ := NewStreamVerifier(nil)
	if _, err := v.Write(b[:len(b)-10]); err != nil {
		t.Fatal(err)
	}
	state, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for i := range state {
		bad := bytes.Clone(state)
		bad[i] ^= 0x40
		r, _ := NewStreamVerifier(nil)
		if err := r.UnmarshalBinary(bad); !errors.Is(err, errState) {
			t.Fatalf("flipped byte %d accepted: %v", i, err)
		}
		if r.Written() != 0 {
			t.Fatal("failed restore changed the verifier")
		}
	}
	for n := range len(state) {
		r, _ := NewStreamVerifier(nil)
		if err := r.UnmarshalBinary(state[:n]); err == nil {
			t.Fatalf("state cut at %d accepted", n)
		}
	}
}

func TestStream_HeaderAndLimitEarly(t *testing.T) {
	b := mustSign(t, testPayload(5000), nil, SignOptions{})
	v, _ := NewStreamVerifier(nil)
	if _, ok := v.Header(); ok {
		t.Fatal("header before any byte")
	}
	if _, err := v.Write(b[:31]); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Header(); ok {
		t.Fatal("header after 31 bytes")
	}
	if _, err := v.Write(b[31:32]); err != nil {
		t.Fatal(err)
	}
	h, ok := v.Header()
	if !ok || h.ImageSize != 5000 || h.HeaderSize != DefaultHeaderSize {
		t.Fatalf("header %+v %v", h, ok)
	}
	if _, known := v.Size(); known {
		t.Fatal("size known before the TLV info header")
	}

	// The limit refuses at the header, before the payload is written.
	small, _ := NewStreamVerifier(nil)
	small.SetMaxSize(4096)
	n, err := small.Write(b)
	wantErr(t, err, ErrTooLarge)
	if n != HeaderSize {
		t.Fatalf("consumed %d bytes before refusing, want %d", n, HeaderSize)
	}
	if _, err := small.Write(b[n:]); !errors.Is(err, ErrTooLarge) {
		t.Fatal("error not sticky")
	}
	if _, err := small.Finish(); !errors.Is(err, ErrTooLarge) {
		t.Fatal("Finish forgot the error")
	}

	// An exact fit passes.
	exact, _ := NewStreamVerifier(nil)
	exact.SetMaxSize(int64(len(b)))
	if _, err := exact.Write(b); err != nil {
		t.Fatal(err)
	}
	if size, ok := exact.Size(); !ok || size != int64(len(b)) || !exact.Done() {
		t.Fatalf("size %d %v done %v", size, ok, exact.Done())
	}
	if _, err := exact.Finish(); err != nil {
		t.Fatal(err)
	}
	// One byte short of the TLV area is refused once the area's size is known.
	short, _ := NewStreamVerifier(nil)
	short.SetMaxSize(int64(len(b)) - 1)
	_, err = short.Write(b)
	wantErr(t, err, ErrTooLarge)
}

func TestStream_WriteDoesNotAllocate(t *testing.T) {
	b := mustSign(t, testPayload(64<<10), testKey(t, KeyEd25519), SignOptions{})
	v, _ := NewStreamVerifier(nil)
	if _, err := v.Write(b[:1024]); err != nil {
		t.Fatal(err)
	}
	off := 1024
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := v.Write(b[off : off+1024]); err != nil {
			t.Fatal(err)
		}
		off += 1024
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per payload write", allocs)
	}
	if _, err := v.Write(b[off:]); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Finish(); err != nil {
		t.Fatal(err)
	}
}

const benchImageSize = 1 << 20

func benchImage(b *testing.B) []byte {
	return mustSign(b, testPayload(benchImageSize), testKey(b, KeyEd25519), SignOptions{})
}

// BenchmarkStreamVerifier is the download path: 4 KiB writes, then Finish
// with the signature check.
func BenchmarkStreamVerifier(b *testing.B) {
	img := benchImage(b)
	key := testKey(b, KeyEd25519).Public()
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := streamBytes(img, 4096, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSHA256 is the baseline: hashing the same bytes and nothing else.
func BenchmarkSHA256(b *testing.B) {
	img := benchImage(b)
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		h := sha256.New()
		for off := 0; off < len(img); off += 4096 {
			h.Write(img[off:min(off+4096, len(img))])
		}
		h.Sum(nil)
	}
}

func BenchmarkVerify(b *testing.B) {
	img := benchImage(b)
	key := testKey(b, KeyEd25519).Public()
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := verifyBytes(img, key); err != nil {
			b.Fatal(err)
		}
	}
}

// The limit is configuration, not saved state: set again after a restore,
// it checks what the restored stream already knows.
func TestStream_LimitAfterRestore(t *testing.T) {
	b := mustSign(t, testPayload(300), nil, SignOptions{HeaderSize: 0x20})
	v, _ := NewStreamVerifier(nil)
	if _, err := v.Write(b[:len(b)-1]); err != nil {
		t.Fatal(err)
	}
	state, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := NewStreamVerifier(nil)
	if err := r.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	r.SetMaxSize(int64(len(b)) - 1)
	_, err = r.Write(b[len(b)-1:])
	wantErr(t, err, ErrTooLarge)

	ok, _ := NewStreamVerifier(nil)
	if err := ok.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	ok.SetMaxSize(int64(len(b)))
	if _, err := ok.Write(b[len(b)-1:]); err != nil {
		t.Fatal(err)
	}
	if _, err := ok.Finish(); err != nil {
		t.Fatal(err)
	}
}
