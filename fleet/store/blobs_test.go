package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"testing"
)

// TestBlobs_ReadsAChunkAtATime: a blob is read back whole and from any
// offset, and no Read returns more than the rest of one chunk, so a
// download never holds the whole image.
func TestBlobs_ReadsAChunkAtATime(t *testing.T) {
	s := open(t, pg.DB(t))
	defer s.Close()
	ctx := context.Background()
	data := make([]byte, 3*ChunkSize+77)
	for i := range data {
		data[i] = byte(i*31 + i>>11)
	}
	if err := s.Blobs().Save(ctx, "ab", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	r, _, err := s.Blobs().Open(ctx, "ab")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, len(data))
	var got []byte
	for {
		n, err := r.Read(buf)
		if n > ChunkSize {
			t.Fatalf("a Read returned %d bytes, more than a chunk (%d)", n, ChunkSize)
		}
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, not the %d saved", len(got), len(data))
	}
	for _, off := range []int64{0, ChunkSize - 1, ChunkSize, 2*ChunkSize + 5, int64(len(data)) - 3} {
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 10)
		n, err := io.ReadFull(r, p)
		want := data[off:min(off+10, int64(len(data)))]
		if !bytes.Equal(p[:n], want) || (err != nil && n != len(want)) {
			t.Errorf("at %d: read %x (%v), want %x", off, p[:n], err, want)
		}
	}
	bb := open(t, t.TempDir()+"/fleet.db")
	defer bb.Close()
	if bb.Blobs() != nil {
		t.Error("a bbolt store has shared blobs")
	}
}

// TestBlobs_Stat: Stat gives a saved blob's size and the time Open gives,
// and fs.ErrNotExist for one never saved or removed.
func TestBlobs_Stat(t *testing.T) {
	s := open(t, pg.DB(t))
	defer s.Close()
	ctx := context.Background()
	b := s.Blobs()
	data := make([]byte, ChunkSize+5)
	for _, sum := range []string{"saved", "removed"} {
		if err := b.Save(ctx, sum, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Remove(ctx, "removed"); err != nil {
		t.Fatal(err)
	}
	r, saved, err := b.Open(ctx, "saved")
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	tests := []struct {
		sum     string
		size    int64
		missing bool
	}{
		{"saved", int64(len(data)), false},
		{"removed", 0, true},
		{"never", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.sum, func(t *testing.T) {
			size, at, err := b.Stat(ctx, tt.sum)
			if tt.missing {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("Stat = %d, %v; want fs.ErrNotExist", size, err)
				}
				return
			}
			if err != nil || size != tt.size || !at.Equal(saved) {
				t.Fatalf("Stat = %d, %v, %v; want %d, %v", size, at, err, tt.size, saved)
			}
		})
	}
}
