package store

import (
	"bytes"
	"context"
	"io"
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
