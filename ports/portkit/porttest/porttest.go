// Package porttest is test support for ports: the conformance kit run
// against a port of a given layout, in-process and over the plugin wire. The
// catalog's table test (ports/all) and a port outside this repository call
// the same function.
package porttest

import (
	"context"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/conformance/conformancetest"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugintest"
)

// Conformance runs the conformance kit against the port of layout l over the
// flash emulator with the board's geometry: in-process, then over a real
// gRPC connection as the plugin boundary has it. It first checks that the
// layout names the board and opens as a flash, so a port never starts on a
// geometry it cannot open.
func Conformance(t *testing.T, board string, l hal.Layout) {
	t.Helper()
	ConformanceOf(t, board, l, func(dev flash.Device) (Port, error) {
		return boot.NewPlatform(l, dev, boot.Options{})
	})
}

// Port is what a port's constructor returns: the contract and Close.
type Port interface {
	hal.Platform
	Close() error
}

// ConformanceOf is Conformance over the port newPort opens on a flash
// device (the C port of ports/cport, say) instead of core/boot's Platform.
func ConformanceOf(t *testing.T, board string, l hal.Layout, newPort func(dev flash.Device) (Port, error)) {
	t.Helper()
	if l.Board != board {
		t.Fatalf("Layout().Board = %q, want %q", l.Board, board)
	}
	for _, name := range []string{hal.PartBootloader, hal.PartParams, hal.PartApp, hal.PartOTA} {
		if _, ok := l.Partition(name); !ok {
			t.Errorf("no %s partition", name)
		}
	}
	for _, name := range []string{"in-process", "grpc"} {
		t.Run(name, func(t *testing.T) {
			dev, err := flash.NewMemory(l.Flash)
			if err != nil {
				t.Fatalf("flash.NewMemory: %v", err)
			}
			if got, want := dev.Geometry().Size, l.Flash.Size; got != want {
				t.Fatalf("flash size %#x, want %#x", got, want)
			}
			// Every call is a power-on: a fresh port over the same flash.
			conformancetest.Test(t, func(ctx context.Context) (hal.Platform, func() error, error) {
				p, err := newPort(dev)
				if err != nil {
					return nil, nil, err
				}
				if name == "grpc" {
					return plugintest.Conn(t, p), p.Close, nil
				}
				return p, p.Close, nil
			})
		})
	}
}
