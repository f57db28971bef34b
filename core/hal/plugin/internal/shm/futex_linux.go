package shm

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Doorbell: Linux has futexes on shared memory, which let host and
// plugin hand a write back and forth without the socket.
const Doorbell = true

// Operations of futex(2), shared (not FUTEX_PRIVATE_FLAG): the two
// processes map the same file, so the kernel keys the futex on the file.
const (
	futexWait = 0
	futexWake = 1
)

// Sleep blocks while *addr == val, at most d. Spurious wakeups are
// fine: callers recheck.
func Sleep(addr *atomic.Uint32, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait, uintptr(val),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// WakeAll wakes every waiter on addr.
func WakeAll(addr *atomic.Uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake, uintptr(1<<31-1), 0, 0, 0)
}
