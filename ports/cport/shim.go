package cport

/*
#include "ota_hal_plat.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"

	"github.com/otaport/otaport/core/boot"
)

// The flash driver of the C port on the host: each function is one call
// of ops in ota_hal_plat.h, ctx the port's flash_ctx, a C word holding the
// cgo.Handle of its Port's host. They run on the goroutine of the Port method
// that called into C, under its lock.

func portOf(ctx unsafe.Pointer) *host {
	return cgo.Handle(*(*C.uintptr_t)(ctx)).Value().(*host)
}

// bytesOf is the n bytes at p, C's or a Go slice passed down to C.
func bytesOf(p *C.uint8_t, n C.uint32_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

//export otaportFlashErase
func otaportFlashErase(ctx unsafe.Pointer, off, n C.uint32_t) C.int {
	p := portOf(ctx)
	return p.note(p.dev.Erase(int64(off), int64(n)))
}

//export otaportFlashProgram
func otaportFlashProgram(ctx unsafe.Pointer, off C.uint32_t, buf *C.uint8_t, n C.uint32_t) C.int {
	p := portOf(ctx)
	return p.note(p.dev.Program(int64(off), bytesOf(buf, n)))
}

//export otaportFlashRead
func otaportFlashRead(ctx unsafe.Pointer, off C.uint32_t, buf *C.uint8_t, n C.uint32_t) C.int {
	p := portOf(ctx)
	_, err := p.dev.ReadAt(bytesOf(buf, n), int64(off))
	return p.note(err)
}

//export otaportCheckImage
func otaportCheckImage(ctx unsafe.Pointer, slot C.int, info *C.ota_image_info_t) C.int {
	p := portOf(ctx)
	v, err := boot.CheckSlot(p.dev, p.layout, boot.Slot(slot), p.opts)
	if err != nil {
		return p.note(err)
	}
	info.parses, info.bootable = cBool(v.Parses), cBool(v.Bootable)
	info.total_size, info.security_counter = C.uint32_t(v.TotalSize), C.uint32_t(v.SecurityCounter)
	reason := v.Reason
	if len(reason) >= len(info.reason) {
		reason = reason[:len(info.reason)-1]
	}
	for i := range len(reason) {
		info.reason[i] = C.char(reason[i])
	}
	info.reason[len(reason)] = 0
	return 0
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
