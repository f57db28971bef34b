package main

import (
	"context"
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"time"
)

// watchPeak writes path with the heap profile of the last collection, and
// path.goroutines with the goroutines, each time the live heap and the
// goroutine stacks together reach a new high (by 2 % or more), until ctx
// ends: what the devices hold at the simulator's peak, which is
// mid-campaign (thousands of installs at once), not at either end.
func watchPeak(ctx context.Context, path string) {
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	var high uint64
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(samples)
		live := samples[0].Value.Uint64() + samples[1].Value.Uint64()
		if live < high+high/50 {
			continue
		}
		high = live
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "--memprofile:", err)
			return
		}
		err = pprof.WriteHeapProfile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "--memprofile:", err)
			return
		}
		if err := writeGoroutines(path + ".goroutines"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
	}
}
