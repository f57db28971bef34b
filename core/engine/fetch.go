package engine

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// fetcher delivers the file from pos on, in full buffers, across dropped
// connections: a transfer that breaks is asked again from the exact byte it
// stopped at (Range), so nothing already received is sent twice. It runs on
// the pipeline's fetch goroutine and owns every field.
type fetcher struct {
	e     *Engine
	op    opener
	pos   int64 // offset of the next byte to receive
	total int64 // size of the file, -1 while unknown
	max   int64 // the most the slot takes
	v     validators
	s     *stream
	fails int // failures in a row without a byte of progress
	// slowCuts counts transfers cut as too slow, progress or not.
	slowCuts int
	// broke is why the last transfer broke, for the reason of a start
	// over that follows it.
	broke error
	// dh is the order's digest, nil without one: the fetcher hashes each
	// chunk as it arrives, beside the verifier and the port.
	dh hash.Hash
}

// next fills buf and hashes what arrived with the order's digest, for the
// pipeline: the chunk carries the digest's state at its end.
func (f *fetcher) next(ctx context.Context, buf []byte) chunkMsg {
	n, last, err := f.fill(ctx, buf)
	c := chunkMsg{buf: buf, n: n, last: last, total: f.total, val: f.v, err: err}
	if f.dh != nil && err == nil {
		f.dh.Write(buf[:n])
		if c.dstate, err = saveHash(f.dh); err != nil {
			c.err = fmt.Errorf("checkpoint: digest state: %w", err)
		}
	}
	return c
}

// fill fills buf from the source. last is true when the file ends with the
// bytes returned (a full buffer may be the last one).
func (f *fetcher) fill(ctx context.Context, buf []byte) (n int, last bool, err error) {
	for n < len(buf) {
		if f.total >= 0 && f.pos >= f.total {
			return n, true, nil
		}
		if err := f.open(ctx); err != nil {
			return n, false, err
		}
		k, rerr := f.s.body.Read(buf[n:])
		if k > 0 {
			// Refuse bytes past what was announced as they arrive: a
			// server that does not stop (Uptane's endless data).
			if f.total >= 0 && f.pos+int64(k) > f.total {
				return n, false, fmt.Errorf("%w: %s sent more than the %d bytes announced: refused at byte %d", ErrDownload, f.op, f.total, f.total)
			}
			if f.pos+int64(k) > f.max {
				return n, false, fmt.Errorf("%w: %s sent more than the %d bytes the update slot takes: refused at byte %d", ErrRefused, f.op, f.max, f.max)
			}
			n += k
			f.pos += int64(k)
			f.fails = 0
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF) && f.total < 0:
			// No announced size: the end of the body is the end.
			f.close()
			return n, true, nil
		case errors.Is(rerr, io.EOF) && f.pos >= f.total:
			f.close()
			return n, true, nil
		default:
			f.close()
			if ctx.Err() != nil {
				return n, false, ctx.Err()
			}
			if errors.Is(rerr, io.EOF) {
				rerr = io.ErrUnexpectedEOF
			}
			what := transient{fmt.Errorf("%w: %s: transfer broke at byte %d of %s: %w", ErrDownload, f.op, f.pos, sizeString(f.total), rerr)}
			f.broke = rerr
			if errors.Is(rerr, ErrTooSlow) {
				// The bytes a trickle brings do not earn it more tries:
				// cuts for slowness count over the whole download.
				f.slowCuts++
				if f.slowCuts > f.e.opts.Retries {
					return n, false, fmt.Errorf("%w (cut as too slow %d times)", what, f.slowCuts)
				}
			}
			if err := f.retry(ctx, what); err != nil {
				return n, false, err
			}
		}
	}
	return n, f.total >= 0 && f.pos >= f.total, nil
}

func sizeString(n int64) string {
	if n < 0 {
		return "an unknown size"
	}
	return fmt.Sprint(n)
}

// open connects to the source at pos, retrying what may succeed later,
// unless a transfer is open already or the whole file is received (f.s
// stays nil then). The pipeline calls it before it makes its first chunk
// buffer, so that a device waiting for the server's answer holds none.
func (f *fetcher) open(ctx context.Context) error {
	for f.s == nil && (f.total < 0 || f.pos < f.total) {
		err := f.connect(ctx)
		var over errStartOver
		if err == nil || !isTransient(err) || errors.As(err, &over) {
			return err
		}
		if err := f.retry(ctx, err); err != nil {
			return err
		}
	}
	return nil
}

// connect opens the source at pos and checks the answer agrees with what is
// known of the file.
func (f *fetcher) connect(ctx context.Context) error {
	s, err := f.op.open(ctx, f.pos, f.v)
	if err != nil {
		return err
	}
	if s.start != f.pos {
		s.body.Close()
		why := s.restart
		if why == "" {
			why = fmt.Sprintf("%s sent the file from byte %d when byte %d was asked for", f.op, s.start, f.pos)
		}
		if f.broke != nil {
			why = fmt.Sprintf("the transfer broke at byte %d (%v), then %s", f.pos, f.broke, why)
		}
		return errStartOver{why: why}
	}
	if s.total >= 0 {
		if f.total >= 0 && s.total != f.total {
			s.body.Close()
			return fmt.Errorf("%w: %s is %d bytes, %d were announced: the server and the order disagree on the file", ErrDownload, f.op, s.total, f.total)
		}
		f.total = s.total
	}
	if f.total > f.max {
		s.body.Close()
		return fmt.Errorf("%w: %s is %d bytes, the update slot takes %d: refused before writing", ErrRefused, f.op, f.total, f.max)
	}
	f.v, f.s, f.broke = s.v, s, nil
	return nil
}

// retry waits before the next attempt, or returns err when the retries in
// a row are used up.
func (f *fetcher) retry(ctx context.Context, err error) error {
	f.fails++
	if f.fails > f.e.opts.Retries {
		if f.e.opts.Retries == 0 {
			return err
		}
		return fmt.Errorf("%w (gave up after %d retries)", err, f.e.opts.Retries)
	}
	wait := f.e.opts.RetryBackoff << (f.fails - 1)
	if wait > maxRetryBackoff || wait <= 0 {
		wait = maxRetryBackoff
	}
	f.e.log.Warn("download: retrying", "err", err, "retry", f.fails, "of", f.e.opts.Retries, "in", wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fetcher) close() {
	if f.s != nil {
		f.s.body.Close()
		f.s = nil
	}
}
