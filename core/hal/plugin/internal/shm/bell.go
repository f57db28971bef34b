// Package shm is the unsafe part of the port plugin transport: the shared
// memory a host and a plugin map, the doorbell control block laid over it,
// and the futex calls that hand a write back and forth. Nothing here knows
// the port contract; core/hal/plugin builds the protocol on top.
//
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
package shm

import (
	"sync/atomic"
	"unsafe"
)

// BellSize is the control block; the data area starts after it.
const BellSize = 4096

// Bell is the control block, laid over the first bytes of the mapping.
// The plain fields are written before the atomic that publishes them and
// read after the atomic that announced them.
type Bell struct {
	Req     atomic.Uint32 // host: seq of the write it posted
	Ack     atomic.Uint32 // plugin: seq of the write it finished
	Closing atomic.Uint32 // 1: the plugin's loop is to stop
	_       uint32
	Off     uint64
	Length  uint64
	Timeout int64 // ns left of the host's deadline, 0 if none
	Failed  uint32
	Code    int32
	MsgLen  uint32
	// Op is what the host posted: OpWrite (zero, what every host
	// before reads posted) or OpRead. For a read the plugin sets length
	// to the bytes it left in the data area.
	Op uint32
	// Features is set by the plugin when it maps the memory, before the
	// host learns of the mapping: FeatureRead when it serves reads.
	Features atomic.Uint32
}

// Operations and features of the doorbell.
const (
	OpWrite uint32 = 0
	OpRead  uint32 = 1

	FeatureRead uint32 = 1
)

// MsgAt is where the error message of a failed write goes.
const (
	MsgAt  = 128
	MsgMax = BellSize - MsgAt
)

// The control block ends before the message area: a field added to it
// that does not fit fails the build here.
var _ [MsgAt - unsafe.Sizeof(Bell{})]byte

// BellOf lays the control block over the start of a mapping of at least
// BellSize bytes.
func BellOf(mem []byte) *Bell { return (*Bell)(unsafe.Pointer(&mem[0])) }
