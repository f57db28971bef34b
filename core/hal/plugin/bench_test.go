package plugin_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin"
	"github.com/otaport/otaport/core/hal/plugintest"
)

// BenchmarkWrite measures Write through the plugin boundary against the
// same port called in-process. The port is testPlatform over the in-memory
// flash emulator (core/flash, lenient mode: a rewrite ANDs the bits, so the
// benchmark cycles through the 8 MiB slot without erasing). Cases:
//
//	inprocess      the port called directly: the baseline
//	plugin         a real plugin process (this binary re-executed), gRPC
//	               over a Unix socket with AutoMTLS, data in shared memory
//	plugin-inline  the same with ClientConfig.NoSharedMemory: data in the
//	               TLS stream (the fallback)
//	testconn       plugintest.Conn: in-process gRPC, no TLS, shared memory
//
// Every Write waits for the result of that write, as the engine's do.
func BenchmarkWrite(b *testing.B) {
	sizes := []struct {
		name string
		n    int
	}{{"4KiB", 4 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}
	targets := []struct {
		name string
		open func(b *testing.B) hal.Platform
	}{
		{"inprocess", func(b *testing.B) hal.Platform { return benchPlatform(b) }},
		{"plugin", func(b *testing.B) hal.Platform { return openPlugin(b, "bench", plugin.ClientConfig{}) }},
		{"plugin-inline", func(b *testing.B) hal.Platform {
			return openPlugin(b, "bench", plugin.ClientConfig{NoSharedMemory: true})
		}},
		{"testconn", func(b *testing.B) hal.Platform { return plugintest.Conn(b, benchPlatform(b)) }},
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			p := tg.open(b)
			for _, sz := range sizes {
				b.Run(sz.name, func(b *testing.B) {
					data := pattern(3, sz.n)
					const slot = 8 << 20
					ctx := b.Context()
					// One write outside the timer: stream and shared memory set up.
					if err := p.Write(ctx, 0, data); err != nil {
						b.Fatal(err)
					}
					b.SetBytes(int64(sz.n))
					b.ResetTimer()
					off := 0
					for b.Loop() {
						if off+sz.n > slot {
							off = 0
						}
						if err := p.Write(ctx, uint64(off), data); err != nil {
							b.Fatal(fmt.Errorf("write at 0x%x: %w", off, err))
						}
						off += sz.n
					}
				})
			}
		})
	}
}

func benchPlatform(b *testing.B) hal.Platform {
	p, err := newFullPlatform(false, nil)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkRead measures Read through the plugin boundary, the call the
// engine reads a whole image back with after the download, against the
// same port in-process. Cases as for BenchmarkWrite: through the doorbell
// and shared memory (plugin, testconn) or as a unary gRPC call in the TLS
// stream (plugin-inline). "into" is the client's ReadInto into one reused
// buffer, as the engine reads; "alloc" is Read, a new slice per call.
//
//	go test -run '^$' -bench BenchmarkRead -benchtime 1s -count 5 ./core/hal/
func BenchmarkRead(b *testing.B) {
	sizes := []struct {
		name string
		n    int
	}{{"64KiB", 64 << 10}, {"1MiB", 1 << 20}}
	targets := []struct {
		name string
		open func(b *testing.B) hal.Platform
	}{
		{"inprocess", func(b *testing.B) hal.Platform { return benchPlatform(b) }},
		{"plugin", func(b *testing.B) hal.Platform { return openPlugin(b, "bench", plugin.ClientConfig{}) }},
		{"plugin-inline", func(b *testing.B) hal.Platform {
			return openPlugin(b, "bench", plugin.ClientConfig{NoSharedMemory: true})
		}},
		{"testconn", func(b *testing.B) hal.Platform { return plugintest.Conn(b, benchPlatform(b)) }},
	}
	type readerInto interface {
		ReadInto(ctx context.Context, off uint64, p []byte) error
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			p := tg.open(b)
			ctx := b.Context()
			const slot = 8 << 20
			if err := p.Write(ctx, 0, pattern(4, slot)); err != nil {
				b.Fatal(err)
			}
			for _, sz := range sizes {
				for _, mode := range []string{"alloc", "into"} {
					ri, ok := p.(readerInto)
					if mode == "into" && !ok {
						continue
					}
					b.Run(sz.name+"/"+mode, func(b *testing.B) {
						buf := make([]byte, sz.n)
						b.SetBytes(int64(sz.n))
						off := 0
						for b.Loop() {
							if off+sz.n > slot {
								off = 0
							}
							var err error
							if mode == "into" {
								err = ri.ReadInto(ctx, uint64(off), buf)
							} else {
								buf, err = p.Read(ctx, uint64(off), sz.n)
							}
							if err != nil || len(buf) != sz.n {
								b.Fatalf("read %d bytes at 0x%x: %d bytes, %v", sz.n, off, len(buf), err)
							}
							off += sz.n
						}
					})
				}
			}
		})
	}
}
