package cport_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/ports/cport"
)

// FuzzParams_ReadLikeGo puts arbitrary bytes in the params partition and
// checks that the C port reads them as the Go port does, without a crash:
// both open or both refuse, the keys read alike, and one more Set leaves
// the same flash behind, which it does only when both replayed the same
// log to the same end, sequence number and state.
func FuzzParams_ReadLikeGo(f *testing.F) {
	l, ok := haltest.Layout("nucleo-l152re")
	if !ok {
		f.Fatal("no nucleo-l152re layout")
	}
	params, _ := l.Partition(hal.PartParams)
	ctx := context.Background()
	// Seeds: the logs the Go port writes, whole and cut short.
	dev, err := flash.NewMemory(l.Flash)
	if err != nil {
		f.Fatal(err)
	}
	pl, err := boot.NewPlatform(l, dev, boot.Options{})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 12 {
		if err := pl.Set(ctx, fmt.Sprint("k", i%4), bytes.Repeat([]byte{byte(i)}, 60*i)); err != nil {
			f.Fatal(err)
		}
		buf := make([]byte, params.Size)
		if _, err := dev.ReadAt(buf, int64(params.Offset)); err != nil {
			f.Fatal(err)
		}
		f.Add(buf, uint16(0))
		f.Add(buf, uint16(97*i))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		img := bytes.Repeat([]byte{l.Flash.EraseValue}, int(params.Size))
		copy(img, data)
		if int(cut) > 0 && int(cut) < len(data) {
			img[cut] ^= 0x10 // a torn bit
		}
		var devs [2]*flash.Emulator
		for i := range devs {
			if devs[i], err = flash.NewMemory(l.Flash); err != nil {
				t.Fatal(err)
			}
			if err := devs[i].Erase(int64(params.Offset), int64(params.Size)); err != nil {
				t.Fatal(err)
			}
			if err := devs[i].Program(int64(params.Offset), img); err != nil {
				t.Fatal(err)
			}
		}
		gp, gerr := boot.NewPlatform(l, devs[0], boot.Options{})
		cp, cerr := cport.New(l, devs[1], boot.Options{})
		if (gerr == nil) != (cerr == nil) {
			t.Fatalf("Go port: %v; C port: %v", gerr, cerr)
		}
		if gerr != nil {
			return
		}
		defer cp.Close()
		for _, k := range []string{"k0", "k1", "k2", "k3", "otaport.keyset"} {
			gv, gok, gerr := gp.Get(ctx, k)
			cv, cok, cerr := cp.Get(ctx, k)
			if gok != cok || !bytes.Equal(gv, cv) || (gerr == nil) != (cerr == nil) {
				t.Fatalf("Get %q: Go port %x %v %v; C port %x %v %v", k, gv, gok, gerr, cv, cok, cerr)
			}
		}
		gerr, cerr = gp.Set(ctx, "fuzz", []byte("x")), cp.Set(ctx, "fuzz", []byte("x"))
		if hal.CodeOf(gerr) != hal.CodeOf(cerr) || (gerr == nil) != (cerr == nil) {
			t.Fatalf("Set: Go port %v; C port %v", gerr, cerr)
		}
		a, b := make([]byte, params.Size), make([]byte, params.Size)
		devs[0].ReadAt(a, int64(params.Offset))
		devs[1].ReadAt(b, int64(params.Offset))
		if !bytes.Equal(a, b) {
			t.Fatal("after one Set the params partitions differ")
		}
	})
}
