package plugin

import (
	"context"
	"time"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin/internal/shm"
)

// bellWait is how long the host sleeps on the futex before it looks at its
// context and at the plugin process again: the bound on noticing a crash
// or a deadline while a write is out.
const bellWait = 10 * time.Millisecond

// ringWrite posts one write through the doorbell and waits for its result.
// It returns done=false when the wait ended without a result (ctx ended,
// the plugin exited, the client closed): the caller reports why and must
// not reuse this shared memory, which the plugin may still read.
func (c *Client) ringWrite(ctx context.Context, off uint64, data []byte) (err error, done bool) {
	copy(c.shared.mem[shm.BellSize:], data)
	return c.ring(ctx, shm.OpWrite, off, uint64(len(data)))
}

// ringRead posts one read of len(p) bytes through the doorbell and copies
// what the port read into p, returning its length; done as for ringWrite.
// Only for a plugin that announced shm.FeatureRead.
func (c *Client) ringRead(ctx context.Context, off uint64, p []byte) (n int, err error, done bool) {
	err, done = c.ring(ctx, shm.OpRead, off, uint64(len(p)))
	if !done || err != nil {
		return 0, err, done
	}
	got := shm.BellOf(c.shared.mem).Length
	if got > uint64(len(p)) {
		return 0, hal.Errorf(hal.CodeInvalid, "read %d bytes at 0x%x: the port returned %d bytes", len(p), off, got), true
	}
	return copy(p, c.shared.mem[shm.BellSize:shm.BellSize+got]), nil, true
}

// ring posts one operation and waits for its result: the common part of
// ringWrite and ringRead.
func (c *Client) ring(ctx context.Context, op uint32, off, length uint64) (err error, done bool) {
	sh := c.shared
	b := shm.BellOf(sh.mem)
	b.Op, b.Off, b.Length = op, off, length
	b.Timeout = 0
	if dl, ok := ctx.Deadline(); ok {
		b.Timeout = int64(time.Until(dl))
	}
	c.seq++
	seq := uint32(c.seq)
	b.Req.Store(seq)
	shm.WakeAll(&b.Req)
	for {
		got := b.Ack.Load()
		if got == seq {
			break
		}
		if ctx.Err() != nil || c.life.Err() != nil || c.exited(0) != nil {
			return nil, false
		}
		shm.Sleep(&b.Ack, got, bellWait)
	}
	if b.Failed == 0 {
		return nil, true
	}
	n := min(int(b.MsgLen), shm.MsgMax)
	return &hal.Error{Code: hal.Code(b.Code), Msg: string(sh.mem[shm.MsgAt : shm.MsgAt+n])}, true
}

// serveBell is the plugin's loop over one doorbell; it holds a reference
// on the mapping until DetachSharedMemory sets closing.
func (s *grpcServer) serveBell(m *mapping, last uint32) {
	defer s.release(m)
	b := shm.BellOf(m.mem)
	data := m.mem[shm.BellSize:]
	for {
		cur := b.Req.Load()
		if b.Closing.Load() != 0 {
			return
		}
		if cur == last {
			shm.Sleep(&b.Req, cur, time.Second)
			continue
		}
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if b.Timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, time.Duration(b.Timeout))
		}
		var err error
		switch {
		case b.Op == shm.OpRead:
			err = s.bellRead(ctx, b, data)
		case b.Op != shm.OpWrite:
			err = hal.Errorf(hal.CodeInvalid, "doorbell: operation %d is not a write (%d) or a read (%d)", b.Op, shm.OpWrite, shm.OpRead)
		case b.Length > uint64(len(data)):
			err = hal.Errorf(hal.CodeInvalid, "write: %d bytes exceed the %d bytes of shared memory", b.Length, len(data))
		default:
			err = s.impl.Write(ctx, b.Off, data[:b.Length])
		}
		cancel()
		b.Failed = 0
		if err != nil {
			msg := err.Error()
			if len(msg) > shm.MsgMax {
				msg = msg[:shm.MsgMax]
			}
			b.Failed, b.Code, b.MsgLen = 1, int32(hal.CodeOf(err)), uint32(copy(m.mem[shm.MsgAt:], msg))
		}
		last = cur
		b.Ack.Store(cur)
		shm.WakeAll(&b.Ack)
	}
}

// shm.OpRead serves a read posted on the doorbell: the port's bytes go to the
// data area and their count to length.
func (s *grpcServer) bellRead(ctx context.Context, b *shm.Bell, area []byte) error {
	n := b.Length
	if n > uint64(len(area)) {
		return hal.Errorf(hal.CodeInvalid, "read: %d bytes exceed the %d bytes of shared memory", n, len(area))
	}
	if ri, ok := s.impl.(readerInto); ok {
		// Straight into the shared memory: no buffer, no copy.
		if err := ri.ReadInto(ctx, b.Off, area[:n]); err != nil {
			return err
		}
		return nil // length is n already
	}
	got, err := s.impl.Read(ctx, b.Off, int(n))
	if err != nil {
		return err
	}
	if len(got) > len(area) {
		return hal.Errorf(hal.CodeInvalid, "read %d bytes at 0x%x: the port returned %d bytes, more than the %d bytes of shared memory", n, b.Off, len(got), len(area))
	}
	b.Length = uint64(copy(area, got))
	return nil
}

// readerInto is a port (or a client) that reads into the caller's buffer:
// a Platform's Read without the allocation of the result. A port that has
// it serves doorbell reads straight into the shared memory.
type readerInto interface {
	ReadInto(ctx context.Context, off uint64, p []byte) error
}

var _ readerInto = (*Client)(nil)
