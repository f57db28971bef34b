package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin"
	"github.com/otaport/otaport/core/hal/plugintest"
)

// readerInto is the client's ReadInto, which the engine's read-back uses.
type readerInto interface {
	ReadInto(ctx context.Context, off uint64, p []byte) error
}

// TestPlugin_ReadSizes reads back what was written, with Read and with
// ReadInto, at sizes on both sides of what goes through the doorbell (up
// to the 4 MiB of shared memory) and what goes over gRPC (larger), on
// every connection.
func TestPlugin_ReadSizes(t *testing.T) {
	const total = 6 << 20
	img := pattern(7, total)
	reads := []struct{ off, n int }{
		{0, 1}, {8, 4095}, {4096, 64 << 10}, {1 << 20, 1 << 20},
		{0, 4 << 20}, {123, 4<<20 + 8}, {0, total},
	}
	for _, conn := range connections() {
		t.Run(conn.name, func(t *testing.T) {
			ctx := t.Context()
			p := conn.open(t)
			if err := p.Init(ctx, hal.InitRequest{Size: total}); err != nil {
				t.Fatal(err)
			}
			for off := 0; off < total; off += 1 << 20 {
				if err := p.Write(ctx, uint64(off), img[off:off+1<<20]); err != nil {
					t.Fatalf("write at 0x%x: %v", off, err)
				}
			}
			ri, into := p.(readerInto)
			for _, r := range reads {
				want := img[r.off : r.off+r.n]
				got, err := p.Read(ctx, uint64(r.off), r.n)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("Read(0x%x, %d) = %d bytes, %v; equal %v", r.off, r.n, len(got), err, bytes.Equal(got, want))
				}
				if !into {
					continue
				}
				buf := bytes.Repeat([]byte{0xA5}, r.n)
				if err := ri.ReadInto(ctx, uint64(r.off), buf); err != nil || !bytes.Equal(buf, want) {
					t.Errorf("ReadInto(0x%x, %d): %v; equal %v", r.off, r.n, err, bytes.Equal(buf, want))
				}
			}
			// A read never changes the slot (a read mistaken for a
			// write would).
			got, err := p.Read(ctx, 0, total)
			if err != nil || !bytes.Equal(got, img) {
				t.Fatalf("slot after the reads differs (%v)", err)
			}
		})
	}
}

// TestPlugin_ReadIntoRefusesShortAnswers: a port that returns fewer bytes
// than asked fails ReadInto, whichever path the read takes.
func TestPlugin_ReadIntoRefusesShortAnswers(t *testing.T) {
	for _, n := range []int{4 << 10, 5 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			base, err := newFullPlatform(true, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := plugintest.Conn(t, shortReads{base}).(readerInto)
			err = p.ReadInto(t.Context(), 0, make([]byte, n))
			if hal.CodeOf(err) != hal.CodeInvalid || !strings.Contains(err.Error(), fmt.Sprintf("returned %d bytes", n-1)) {
				t.Fatalf("ReadInto of a short answer = %v, want an invalid-code error naming %d bytes", err, n-1)
			}
		})
	}
}

// shortReads answers every read with one byte less than asked.
type shortReads struct{ *fullPlatform }

func (s shortReads) Read(ctx context.Context, off uint64, n int) ([]byte, error) {
	b, err := s.fullPlatform.Read(ctx, off, n)
	if err != nil || len(b) == 0 {
		return b, err
	}
	return b[:len(b)-1], nil
}

// TestPlugin_ReadCrashAndHang: a plugin that dies or hangs in a read
// through the doorbell is reported as for a write, and after a hang the
// next read works (on fresh shared memory).
func TestPlugin_ReadCrashAndHang(t *testing.T) {
	for _, mode := range []string{"doorbell", "inline"} {
		t.Run("crash/"+mode, func(t *testing.T) {
			c := openPlugin(t, "full", plugin.ClientConfig{CallTimeout: 30 * time.Second, NoSharedMemory: mode == "inline"})
			ctx := t.Context()
			if _, err := c.Read(ctx, 0, 64); err != nil {
				t.Fatalf("first read: %v", err)
			}
			_, err := c.Read(ctx, 0, readCrashLen)
			var xe *plugin.ExitError
			if !errors.As(err, &xe) || xe.State != "exit status 3" {
				t.Fatalf("read during crash: %v, want an *plugin.ExitError with exit status 3", err)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("read %d bytes at 0x0: port plugin ", readCrashLen)) {
				t.Errorf("error %q does not say which call and which plugin", err)
			}
		})
		t.Run("hang/"+mode, func(t *testing.T) {
			c := openPlugin(t, "full", plugin.ClientConfig{CallTimeout: 300 * time.Millisecond, NoSharedMemory: mode == "inline"})
			ctx := t.Context()
			data := pattern(9, 8192)
			if err := c.Write(ctx, 0, data); err != nil {
				t.Fatal(err)
			}
			_, err := c.Read(ctx, 0, readHangLen)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "CallTimeout") {
				t.Fatalf("hung read: %v, want a deadline error naming CallTimeout", err)
			}
			buf := make([]byte, len(data))
			if err := c.ReadInto(ctx, 0, buf); err != nil || !bytes.Equal(buf, data) {
				t.Fatalf("read after the hung one: %v (equal %v)", err, bytes.Equal(buf, data))
			}
		})
	}
}
