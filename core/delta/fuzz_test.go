package delta

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// limitWriter fails the test when more than the declared target is written.
type limitWriter struct {
	t     *testing.T
	n     int64
	limit int64
}

func (w *limitWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.limit {
		w.t.Fatalf("decoder wrote %d bytes, the header declares %d", w.n, w.limit)
	}
	return len(p), nil
}

// FuzzApply feeds arbitrary patches to the decoder against a fixed base: it
// must never panic, never write past the target size its header declares,
// and fail only with a corrupt-patch or truncation error (of the patch, or
// of the base when the header claims a larger one). Its memory is fixed
// by construction (arrays in the Decoder, no allocation per block), which
// TestApply_MemoryBounded measures. Seeds are in testdata/fuzz/FuzzApply.
func FuzzApply(f *testing.F) {
	base, target := firmwareLike(12, 3000)
	for _, bl := range []uint8{12, 13} {
		p, err := Encode(base, target, Options{BlockLog: bl})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		h, herr := ParseHeader(patch)
		limit := int64(0)
		if herr == nil {
			limit = int64(h.TargetSize)
		}
		w := &limitWriter{t: t, limit: limit}
		err := Apply(context.Background(), bytes.NewReader(patch), bytes.NewReader(base), w)
		if err == nil {
			if herr != nil || w.n != limit {
				t.Fatalf("applied: wrote %d bytes of %d (header error %v)", w.n, limit, herr)
			}
			return
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("error that is neither ErrCorrupt nor truncation: %v", err)
		}
	})
}
