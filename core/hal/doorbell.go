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
// Without futexes (not Linux) the host posts the same offset and length
// over the gRPC stream and only the data goes through shared memory;
// without shared memory the data goes inline in the stream.

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
}

// bellMsg is where the error message of a failed write goes.
const (
	bellMsgAt  = 128
	bellMsgMax = bellSize - bellMsgAt
)

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
	sh := c.shared
	b := bellOf(sh.mem)
	copy(sh.mem[bellSize:], data)
	b.off, b.length = off, uint64(len(data))
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
		if b.length > uint64(len(data)) {
			err = Errorf(CodeInvalid, "write: %d bytes exceed the %d bytes of shared memory", b.length, len(data))
		} else {
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
