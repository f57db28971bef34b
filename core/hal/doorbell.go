package hal

import (
	"context"
	"sync/atomic"
	"time"
	"unsafe"
)

// The shared memory a host attaches starts with a control block, the
// "doorbell", and the write data follows it. With the doorbell a write
// never touches the socket: the host copies the chunk into the data area,
// fills in offset and length, bumps req and wakes the plugin's futex; the
// plugin calls the port, fills in the result, bumps ack and wakes the
// host's. That is two context switches per write instead of a gRPC round
// trip (a reader, a handler and a writer goroutine on each side, and TLS
// records both ways), which is what bounds throughput at engine-sized
// chunks. The file is created by the host in a private directory and its
// name crosses only the mutually authenticated gRPC connection, so the
// doorbell is as private as the socket.
//
// Reads of the update slot (the engine's read-back of a whole image) ring
// the same doorbell with op set to read: the plugin calls the port's Read
// and leaves the bytes in the data area, instead of a unary gRPC call that
// moves every byte through protobuf and TLS twice. The plugin announces
// that it serves reads in the control block when it maps it (features), so
// a host never sends a read to a plugin built before reads existed, which
// would take it for a write; an older host never sets op, which is zero
// for a write.
//
// Without futexes (not Linux) the host posts the same offset and length
// over the gRPC stream and only the data goes through shared memory, and
// reads are unary gRPC calls; without shared memory the data goes inline
// in the stream.

// bellSize is the control block; the data area starts after it.
const bellSize = 4096

// doorbell is the control block, laid over the first bytes of the mapping.
// The plain fields are written before the atomic that publishes them and
// read after the atomic that announced them.
type doorbell struct {
	req     atomic.Uint32 // host: seq of the write it posted
	ack     atomic.Uint32 // plugin: seq of the write it finished
	closing atomic.Uint32 // 1: the plugin's loop is to stop
	_       uint32
	off     uint64
	length  uint64
	timeout int64 // ns left of the host's deadline, 0 if none
	failed  uint32
	code    int32
	msgLen  uint32
	// op is what the host posted: bellWrite (zero, what every host
	// before reads posted) or bellRead. For a read the plugin sets length
	// to the bytes it left in the data area.
	op uint32
	// features is set by the plugin when it maps the memory, before the
	// host learns of the mapping: bellFeatureRead when it serves reads.
	features atomic.Uint32
}

// Operations and features of the doorbell.
const (
	bellWrite uint32 = 0
	bellRead  uint32 = 1

	bellFeatureRead uint32 = 1
)

// bellMsg is where the error message of a failed write goes.
const (
	bellMsgAt  = 128
	bellMsgMax = bellSize - bellMsgAt
)

// The control block ends before the message area: a field added to it
// that does not fit fails the build here.
var _ [bellMsgAt - unsafe.Sizeof(doorbell{})]byte

func bellOf(mem []byte) *doorbell { return (*doorbell)(unsafe.Pointer(&mem[0])) }

// bellWait is how long the host sleeps on the futex before it looks at its
// context and at the plugin process again: the bound on noticing a crash
// or a deadline while a write is out.
const bellWait = 10 * time.Millisecond

// ringWrite posts one write through the doorbell and waits for its result.
// It returns done=false when the wait ended without a result (ctx ended,
// the plugin exited, the client closed): the caller reports why and must
// not reuse this shared memory, which the plugin may still read.
func (c *Client) ringWrite(ctx context.Context, off uint64, data []byte) (err error, done bool) {
	copy(c.shared.mem[bellSize:], data)
	return c.ring(ctx, bellWrite, off, uint64(len(data)))
}

// ringRead posts one read of len(p) bytes through the doorbell and copies
// what the port read into p, returning its length; done as for ringWrite.
// Only for a plugin that announced bellFeatureRead.
func (c *Client) ringRead(ctx context.Context, off uint64, p []byte) (n int, err error, done bool) {
	err, done = c.ring(ctx, bellRead, off, uint64(len(p)))
	if !done || err != nil {
		return 0, err, done
	}
	got := bellOf(c.shared.mem).length
	if got > uint64(len(p)) {
		return 0, Errorf(CodeInvalid, "read %d bytes at 0x%x: the port returned %d bytes", len(p), off, got), true
	}
	return copy(p, c.shared.mem[bellSize:bellSize+got]), nil, true
}

// ring posts one operation and waits for its result: the common part of
// ringWrite and ringRead.
func (c *Client) ring(ctx context.Context, op uint32, off, length uint64) (err error, done bool) {
	sh := c.shared
	b := bellOf(sh.mem)
	b.op, b.off, b.length = op, off, length
	b.timeout = 0
	if dl, ok := ctx.Deadline(); ok {
		b.timeout = int64(time.Until(dl))
	}
	c.seq++
	seq := uint32(c.seq)
	b.req.Store(seq)
	futexWakeAll(&b.req)
	for {
		got := b.ack.Load()
		if got == seq {
			break
		}
		if ctx.Err() != nil || c.life.Err() != nil || c.exited(0) != nil {
			return nil, false
		}
		futexSleep(&b.ack, got, bellWait)
	}
	if b.failed == 0 {
		return nil, true
	}
	n := min(int(b.msgLen), bellMsgMax)
	return &Error{Code: Code(b.code), Msg: string(sh.mem[bellMsgAt : bellMsgAt+n])}, true
}

// serveBell is the plugin's loop over one doorbell; it holds a reference
// on the mapping until DetachSharedMemory sets closing.
func (s *grpcServer) serveBell(m *mapping, last uint32) {
	defer s.release(m)
	b := bellOf(m.mem)
	data := m.mem[bellSize:]
	for {
		cur := b.req.Load()
		if b.closing.Load() != 0 {
			return
		}
		if cur == last {
			futexSleep(&b.req, cur, time.Second)
			continue
		}
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if b.timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, time.Duration(b.timeout))
		}
		var err error
		switch {
		case b.op == bellRead:
			err = s.bellRead(ctx, b, data)
		case b.op != bellWrite:
			err = Errorf(CodeInvalid, "doorbell: operation %d is not a write (%d) or a read (%d)", b.op, bellWrite, bellRead)
		case b.length > uint64(len(data)):
			err = Errorf(CodeInvalid, "write: %d bytes exceed the %d bytes of shared memory", b.length, len(data))
		default:
			err = s.impl.Write(ctx, b.off, data[:b.length])
		}
		cancel()
		b.failed = 0
		if err != nil {
			msg := err.Error()
			if len(msg) > bellMsgMax {
				msg = msg[:bellMsgMax]
			}
			b.failed, b.code, b.msgLen = 1, int32(CodeOf(err)), uint32(copy(m.mem[bellMsgAt:], msg))
		}
		last = cur
		b.ack.Store(cur)
		futexWakeAll(&b.ack)
	}
}

// bellRead serves a read posted on the doorbell: the port's bytes go to the
// data area and their count to length.
func (s *grpcServer) bellRead(ctx context.Context, b *doorbell, area []byte) error {
	n := b.length
	if n > uint64(len(area)) {
		return Errorf(CodeInvalid, "read: %d bytes exceed the %d bytes of shared memory", n, len(area))
	}
	if ri, ok := s.impl.(readerInto); ok {
		// Straight into the shared memory: no buffer, no copy.
		if err := ri.ReadInto(ctx, b.off, area[:n]); err != nil {
			return err
		}
		return nil // length is n already
	}
	got, err := s.impl.Read(ctx, b.off, int(n))
	if err != nil {
		return err
	}
	if len(got) > len(area) {
		return Errorf(CodeInvalid, "read %d bytes at 0x%x: the port returned %d bytes, more than the %d bytes of shared memory", n, b.off, len(got), len(area))
	}
	b.length = uint64(copy(area, got))
	return nil
}

// readerInto is a port (or a client) that reads into the caller's buffer:
// a Platform's Read without the allocation of the result. A port that has
// it serves doorbell reads straight into the shared memory.
type readerInto interface {
	ReadInto(ctx context.Context, off uint64, p []byte) error
}

var _ readerInto = (*Client)(nil)
