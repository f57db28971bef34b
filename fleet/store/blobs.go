package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ChunkSize is how many bytes of a firmware blob one row of blob_chunks
// holds: a Range request reads the chunks it covers, one at a time, so a
// download holds at most one chunk in memory.
const ChunkSize = 256 << 10

// Blobs keeps firmware blobs in the PostgreSQL database, in chunks, for
// every otaserve process on it (fleet/firmware's Blobs).
type Blobs struct {
	pool *pgxpool.Pool
}

// Blobs returns the database's blob store, or nil for a bbolt file (whose
// otaserve keeps its firmware in its data directory).
func (s *Store) Blobs() *Blobs {
	if p, ok := s.b.(*pgDB); ok {
		return &Blobs{pool: p.blobs}
	}
	return nil
}

// Save keeps the size bytes of r under sum, in one transaction: a blob is
// whole or absent. Bytes already kept under sum stay.
func (b *Blobs) Save(ctx context.Context, sum string, r io.Reader, size int64) error {
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO blobs (sha256, size, chunk_size) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING`,
			sum, size, ChunkSize)
		if err != nil {
			return fmt.Errorf("save blob: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil // the same bytes, uploaded before
		}
		buf := make([]byte, ChunkSize)
		var n int64
		for seq := 0; n < size; seq++ {
			k, err := io.ReadFull(r, buf[:min(int64(ChunkSize), size-n)])
			if err != nil {
				return fmt.Errorf("save blob: read byte %d of %d: %w", n, size, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO blob_chunks (sha256, seq, data) VALUES ($1, $2, $3)`, sum, seq, buf[:k]); err != nil {
				return fmt.Errorf("save blob: chunk %d: %w", seq, err)
			}
			n += int64(k)
		}
		return nil
	})
}

// Open returns a reader of the blob that fetches its chunks as they are
// read, and when the blob was saved.
func (b *Blobs) Open(ctx context.Context, sum string) (io.ReadSeekCloser, time.Time, error) {
	r := &blobReader{ctx: ctx, pool: b.pool, sum: sum, seq: -1}
	created, err := b.row(ctx, sum, &r.size, &r.chunk)
	if err != nil {
		return nil, time.Time{}, err
	}
	return r, created, nil
}

// Stat returns the blob's size and when it was saved, from its row alone:
// one short statement, none of its chunks.
func (b *Blobs) Stat(ctx context.Context, sum string) (int64, time.Time, error) {
	var size, chunk int64
	created, err := b.row(ctx, sum, &size, &chunk)
	return size, created, err
}

// row reads the blob's row into size and chunk and returns when it was
// saved; an error wrapping fs.ErrNotExist when there is none.
func (b *Blobs) row(ctx context.Context, sum string, size, chunk *int64) (time.Time, error) {
	var created time.Time
	err := b.pool.QueryRow(ctx, `SELECT size, chunk_size, created FROM blobs WHERE sha256 = $1`, sum).Scan(size, chunk, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, fmt.Errorf("blob %s: %w", sum, fs.ErrNotExist)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("blob %s: %w", sum, err)
	}
	return created, nil
}

// Remove deletes a blob and its chunks.
func (b *Blobs) Remove(ctx context.Context, sum string) error {
	if _, err := b.pool.Exec(ctx, `DELETE FROM blobs WHERE sha256 = $1`, sum); err != nil {
		return fmt.Errorf("remove blob %s: %w", sum, err)
	}
	return nil
}

// blobReader reads a blob one chunk at a time. The chunks of a name never
// change, so each is read in its own statement, outside a transaction.
type blobReader struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	sum   string
	size  int64
	chunk int64
	off   int64
	seq   int64 // the chunk in buf; -1 for none
	buf   []byte
}

func (r *blobReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	seq := r.off / r.chunk
	if seq != r.seq {
		r.seq = -1
		err := r.pool.QueryRow(r.ctx, `SELECT data FROM blob_chunks WHERE sha256 = $1 AND seq = $2`, r.sum, seq).Scan(&r.buf)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("blob %s: chunk %d: %w (removed while read)", r.sum, seq, fs.ErrNotExist)
		}
		if err != nil {
			return 0, fmt.Errorf("blob %s: chunk %d: %w", r.sum, seq, err)
		}
		r.seq = seq
	}
	n := copy(p, r.buf[r.off-seq*r.chunk:])
	if n == 0 {
		return 0, fmt.Errorf("blob %s: chunk %d is %d bytes, short of byte %d", r.sum, seq, len(r.buf), r.off)
	}
	r.off += int64(n)
	return n, nil
}

func (r *blobReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, fmt.Errorf("blob %s: seek: whence %d", r.sum, whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("blob %s: seek to %d", r.sum, offset)
	}
	r.off = offset
	return offset, nil
}

func (r *blobReader) Close() error { return nil }
