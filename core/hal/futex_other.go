//go:build !linux

package hal

import (
	"sync/atomic"
	"time"
)

// doorbellSupported is false: without futexes the write requests go over
// the gRPC stream (the data may still travel through shared memory).
const doorbellSupported = false

func futexSleep(_ *atomic.Uint32, _ uint32, d time.Duration) { time.Sleep(d) }

func futexWakeAll(*atomic.Uint32) {}
