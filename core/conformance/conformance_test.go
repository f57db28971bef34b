package conformance_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/conformance"
	"github.com/otaport/otaport/core/conformance/conformancetest"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugintest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// refLayout is a single-bank board of 4 KiB sectors with an 8-byte program
// unit, the shape of an STM32L4 or an nRF with a double-word writer.
func refLayout() hal.Layout {
	return hal.Layout{
		Board:  "ref-board",
		Scheme: hal.SingleBank,
		Flash: hal.FlashGeometry{Size: 256 << 10, Sectors: []hal.SectorRun{{Count: 64, Size: 4 << 10}},
			WriteAlign: 8, EraseValue: 0xFF},
		Partitions: []hal.Partition{
			{Name: hal.PartBootloader, Offset: 0, Size: 16 << 10},
			{Name: hal.PartParams, Offset: 16 << 10, Size: 8 << 10},
			{Name: hal.PartApp, Offset: 24 << 10, Size: 112 << 10},
			{Name: hal.PartOTA, Offset: 136 << 10, Size: 112 << 10},
		},
		Signature: "ed25519",
	}
}

// refPort is the smallest port that follows the contract: a single-bank
// port over the flash emulator that keeps its boot flag and KV store as one
// JSON record in params. fault names one deliberate bug, so the tests can
// show the kit fails ports that have it.
type refPort struct {
	mu     sync.Mutex
	dev    *flash.Emulator
	l      hal.Layout
	ota    hal.Partition
	params hal.Partition
	st     refState
	fault  string
}

type refState struct {
	Pending bool              `json:"pending"`
	KV      map[string][]byte `json:"kv"`
}

// Faults a refPort can have.
const (
	faultNone        = ""
	faultNoErase     = "no-erase"     // Init does not erase
	faultIgnoreAlign = "ignore-align" // Write rounds a misaligned offset down
	faultNoPad       = "no-pad"       // Write drops a short final unit
	faultLaxBounds   = "lax-bounds"   // Write checks the flash's end, not the slot's
	faultVolatileKV  = "volatile-kv"  // KV lives in memory only
	faultNoKVCap     = "no-kv-cap"    // KV not listed in capabilities
	faultSlotIsOTA   = "slot-is-ota"  // ReadSlot reads ota whatever slot it is given
)

func openRef(dev *flash.Emulator, l hal.Layout, fault string) (*refPort, error) {
	p := &refPort{dev: dev, l: l, fault: fault}
	p.ota, _ = l.Partition(hal.PartOTA)
	p.params, _ = l.Partition(hal.PartParams)
	var n [4]byte
	if _, err := dev.ReadAt(n[:], int64(p.params.Offset)); err != nil {
		return nil, err
	}
	p.st.KV = map[string][]byte{}
	if n != [4]byte{0xFF, 0xFF, 0xFF, 0xFF} {
		b := make([]byte, binary.LittleEndian.Uint32(n[:]))
		if _, err := dev.ReadAt(b, int64(p.params.Offset)+4); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &p.st); err != nil {
			return nil, fmt.Errorf("params: %w", err)
		}
	}
	return p, nil
}

// save writes the state to params. Not power-safe: the kit does not cut
// power, and core/boot is where that is done properly.
func (p *refPort) save() error {
	b, err := json.Marshal(p.st)
	if err != nil {
		return err
	}
	rec := binary.LittleEndian.AppendUint32(nil, uint32(len(b)))
	rec = append(rec, b...)
	for len(rec)%int(p.l.Flash.WriteAlign) != 0 {
		rec = append(rec, 0xFF)
	}
	if err := p.dev.Erase(int64(p.params.Offset), int64(p.params.Size)); err != nil {
		return err
	}
	return p.dev.Program(int64(p.params.Offset), rec)
}

func (p *refPort) Describe(ctx context.Context) (hal.Info, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	caps := []string{"kv", hal.CapReadSlot}
	if p.fault == faultNoKVCap {
		caps = nil
	}
	return hal.Info{
		Layout: p.l,
		Boot: hal.BootState{Slots: []hal.SlotState{
			{Name: hal.PartApp, Active: true},
			{Name: hal.PartOTA, Pending: p.st.Pending},
		}},
		Capabilities: caps,
	}, nil
}

func (p *refPort) Init(ctx context.Context, req hal.InitRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.Size == 0 {
		return hal.Errorf(hal.CodeInvalid, "init: size 0")
	}
	if req.Size > p.ota.Size {
		return hal.Errorf(hal.CodeOutOfBounds, "init: %d bytes do not fit ota (%d)", req.Size, p.ota.Size)
	}
	if req.Resume || p.fault == faultNoErase {
		return nil
	}
	end := int64(p.ota.Offset)
	for end < int64(p.ota.Offset+req.Size) {
		start, size, err := p.dev.SectorAt(end)
		if err != nil {
			return err
		}
		end = start + size
	}
	if err := p.dev.Erase(int64(p.ota.Offset), end-int64(p.ota.Offset)); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return nil
}

func (p *refPort) Write(ctx context.Context, off uint64, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	align := uint64(p.l.Flash.WriteAlign)
	if off%align != 0 {
		if p.fault != faultIgnoreAlign {
			return hal.Errorf(hal.CodeMisaligned, "write at 0x%x: not a multiple of %d", off, align)
		}
		off = off / align * align
	}
	limit := p.ota.Size
	if p.fault == faultLaxBounds {
		limit = p.l.Flash.Size - p.ota.Offset
	}
	if off > limit || uint64(len(data)) > limit-off {
		return hal.Errorf(hal.CodeOutOfBounds, "write at 0x%x: past the end of ota", off)
	}
	buf := bytes.Clone(data)
	if p.fault == faultNoPad {
		buf = buf[:uint64(len(buf))/align*align]
	}
	for uint64(len(buf))%align != 0 {
		buf = append(buf, p.l.Flash.EraseValue)
	}
	if err := p.dev.Program(int64(p.ota.Offset+off), buf); err != nil {
		return fmt.Errorf("write ota at 0x%x: %w", off, err)
	}
	return nil
}

func (p *refPort) Read(ctx context.Context, off uint64, n int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 0 || off > p.ota.Size || uint64(n) > p.ota.Size-off {
		return nil, hal.Errorf(hal.CodeOutOfBounds, "read at 0x%x: past the end of ota", off)
	}
	b := make([]byte, n)
	if _, err := p.dev.ReadAt(b, int64(p.ota.Offset+off)); err != nil {
		return nil, fmt.Errorf("read ota at 0x%x: %w", off, err)
	}
	return b, nil
}

func (p *refPort) ReadSlot(ctx context.Context, slot string, off uint64, n int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slot != hal.PartApp && slot != hal.PartOTA {
		return nil, hal.Errorf(hal.CodeInvalid, "read slot %q: not an image slot", slot)
	}
	if p.fault == faultSlotIsOTA {
		slot = hal.PartOTA
	}
	part, _ := p.l.Partition(slot)
	if n < 0 || off > part.Size || uint64(n) > part.Size-off {
		return nil, hal.Errorf(hal.CodeOutOfBounds, "read %s at 0x%x: past its end", slot, off)
	}
	b := make([]byte, n)
	if _, err := p.dev.ReadAt(b, int64(part.Offset+off)); err != nil {
		return nil, fmt.Errorf("read %s at 0x%x: %w", slot, off, err)
	}
	return b, nil
}

func (p *refPort) SetBoot(ctx context.Context, req hal.BootRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch req.Mode {
	case hal.BootTest, hal.BootPermanent:
		p.st.Pending = true
		return p.save()
	case hal.BootConfirm:
		return nil
	}
	return hal.Errorf(hal.CodeInvalid, "set boot: mode %v", req.Mode)
}

func (p *refPort) Rollback(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.st.Pending {
		return hal.Errorf(hal.CodeUnsupported, "rollback: nothing pending")
	}
	p.st.Pending = false
	return p.save()
}

func (p *refPort) Get(ctx context.Context, key string) ([]byte, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.st.KV[key]
	return bytes.Clone(v), ok, nil
}

func (p *refPort) Set(ctx context.Context, key string, value []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if value == nil {
		delete(p.st.KV, key)
	} else {
		p.st.KV[key] = bytes.Clone(value)
	}
	if p.fault == faultVolatileKV {
		return nil
	}
	return p.save()
}

var (
	_ hal.Platform   = (*refPort)(nil)
	_ hal.KV         = (*refPort)(nil)
	_ hal.SlotReader = (*refPort)(nil)
)

// refTarget starts a refPort over one in-memory flash, again at each call.
func refTarget(t testing.TB, fault string) conformance.Target {
	l := refLayout()
	dev, err := flash.NewMemory(l.Flash)
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context) (hal.Platform, func() error, error) {
		p, err := openRef(dev, l, fault)
		if err != nil {
			return nil, nil, err
		}
		return p, func() error { return nil }, nil
	}
}

func TestKit_PassesReferencePort(t *testing.T) {
	conformancetest.Test(t, refTarget(t, faultNone))
}

// TestRun_ReferencePortGolden pins the output of Run, the text otarun
// conformance prints.
func TestRun_ReferencePortGolden(t *testing.T) {
	var out bytes.Buffer
	passed, failed := conformance.Run(t.Context(), refTarget(t, faultNone), &out)
	if failed != 0 {
		t.Errorf("reference port: %d failed:\n%s", failed, out.String())
	}
	// describe/capabilities passes, the setboot cases pass: every case.
	if want := len(conformance.Names()); passed != want {
		t.Errorf("passed = %d, want %d", passed, want)
	}
	golden := filepath.Join("testdata", "run-reference.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("Run output differs from %s (run with -update if intended):\n%s", golden, out.String())
	}
}

func TestKit_FailsBrokenPorts(t *testing.T) {
	tests := []struct {
		fault    string
		mustFail []string
	}{
		{faultNoErase, []string{"init/erases-stale-data"}},
		{faultIgnoreAlign, []string{"write/misaligned"}},
		{faultNoPad, []string{"write/unaligned-tail", "write/round-trip"}},
		{faultLaxBounds, []string{"write/out-of-bounds"}},
		{faultVolatileKV, []string{"kv/survives-restart"}},
		{faultSlotIsOTA, []string{"read-slot/running-and-update"}},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			var out bytes.Buffer
			_, failed := conformance.Run(t.Context(), refTarget(t, tt.fault), &out)
			t.Logf("kit output:\n%s", out.String())
			if failed == 0 {
				t.Fatalf("the kit passed a port with fault %q:\n%s", tt.fault, out.String())
			}
			for _, name := range tt.mustFail {
				if !strings.Contains(out.String(), "FAIL "+name+": ") {
					t.Errorf("case %s did not fail for fault %q:\n%s", name, tt.fault, out.String())
				}
			}
		})
	}
}

func TestKit_SkipsUnlistedCapabilities(t *testing.T) {
	var out bytes.Buffer
	_, failed := conformance.Run(t.Context(), refTarget(t, faultNoKVCap), &out)
	if failed != 0 {
		t.Errorf("%d failed:\n%s", failed, out.String())
	}
	for _, name := range conformance.Names() {
		if strings.HasPrefix(name, "kv/") && !strings.Contains(out.String(), "SKIP "+name+": the port does not list capability \"kv\"") {
			t.Errorf("%s not skipped:\n%s", name, out.String())
		}
	}
}

func TestRun_StartFailureFailsEveryCase(t *testing.T) {
	open := func(ctx context.Context) (hal.Platform, func() error, error) {
		return nil, nil, fmt.Errorf("plugin exited")
	}
	var out bytes.Buffer
	passed, failed := conformance.Run(t.Context(), open, &out)
	if passed != 0 || failed != len(conformance.Names()) {
		t.Errorf("passed %d, failed %d; want 0, %d", passed, failed, len(conformance.Names()))
	}
	if !strings.Contains(out.String(), "FAIL describe/layout: start the port: plugin exited") {
		t.Errorf("output does not give the reason:\n%s", out.String())
	}
}

func TestRun_RecoversFromPortPanic(t *testing.T) {
	l := refLayout()
	dev, err := flash.NewMemory(l.Flash)
	if err != nil {
		t.Fatal(err)
	}
	open := func(ctx context.Context) (hal.Platform, func() error, error) {
		p, err := openRef(dev, l, faultNone)
		return panicky{p}, nil, err
	}
	var out bytes.Buffer
	_, failed := conformance.Run(t.Context(), open, &out)
	if failed == 0 || !strings.Contains(out.String(), "FAIL write/round-trip: panic: port bug") {
		t.Errorf("a panicking port did not fail cleanly:\n%s", out.String())
	}
}

// panicky is a port whose Write panics.
type panicky struct{ *refPort }

func (panicky) Write(context.Context, uint64, []byte) error { panic("port bug") }

// Boards for core/boot, from the shapes its own tests use.
type bootBoard struct {
	name  string
	geo   hal.FlashGeometry
	parts [4][2]uint64 // bootloader, params, app, ota: offset, size
}

var bootBoards = []bootBoard{
	{
		// Uniform 4 KiB sectors, 4-byte program unit (NXP K64F-like).
		name: "uniform-4k",
		geo: hal.FlashGeometry{Size: 256 << 10, Sectors: []hal.SectorRun{{Count: 64, Size: 4 << 10}},
			WriteAlign: 4, EraseValue: 0xFF},
		parts: [4][2]uint64{{0, 0x4000}, {0x4000, 0x2000}, {0x6000, 0x1C000}, {0x22000, 0x1C000}},
	},
	{
		// STM32F407: 4x16K, 1x64K, 7x128K, byte programming (RM0090 3.3).
		name: "stm32f4",
		geo: hal.FlashGeometry{Base: 0x08000000, Size: 1 << 20,
			Sectors:    []hal.SectorRun{{Count: 4, Size: 16 << 10}, {Count: 1, Size: 64 << 10}, {Count: 7, Size: 128 << 10}},
			WriteAlign: 1, EraseValue: 0xFF},
		parts: [4][2]uint64{{0, 0x4000}, {0x4000, 0x8000}, {0x20000, 0x40000}, {0x60000, 0x40000}},
	},
	{
		// STM32L0: 128-byte pages, word programming, erased cells read 0x00.
		name: "stm32l0-erase00",
		geo: hal.FlashGeometry{Size: 192 << 10, Sectors: []hal.SectorRun{{Count: 1536, Size: 128}},
			WriteAlign: 4, EraseValue: 0x00},
		parts: [4][2]uint64{{0, 0x2000}, {0x2000, 0x400}, {0x2400, 0xE000}, {0x10400, 0xE000}},
	},
	{
		// STM32H7: 128 KiB sectors, 32-byte flash words.
		name: "stm32h7-32byte",
		geo: hal.FlashGeometry{Base: 0x08000000, Size: 1 << 20, Sectors: []hal.SectorRun{{Count: 8, Size: 128 << 10}},
			WriteAlign: 32, EraseValue: 0xFF},
		parts: [4][2]uint64{{0, 0x20000}, {0x20000, 0x40000}, {0x60000, 0x40000}, {0xA0000, 0x40000}},
	},
}

func (b bootBoard) layout(s hal.Scheme) hal.Layout {
	names := []string{hal.PartBootloader, hal.PartParams, hal.PartApp, hal.PartOTA}
	l := hal.Layout{Board: b.name, Scheme: s, Flash: b.geo, Signature: "ed25519"}
	for i, p := range b.parts {
		l.Partitions = append(l.Partitions, hal.Partition{Name: names[i], Offset: p[0], Size: p[1]})
	}
	return l
}

// bootTarget starts boot.NewPlatform over dev at each call.
func bootTarget(l hal.Layout, dev flash.Device, opts boot.Options) conformance.Target {
	return func(ctx context.Context) (hal.Platform, func() error, error) {
		p, err := boot.NewPlatform(l, dev, opts)
		if err != nil {
			return nil, nil, err
		}
		return p, p.Close, nil
	}
}

func TestKit_BootPlatform(t *testing.T) {
	for _, b := range bootBoards {
		for _, s := range []hal.Scheme{hal.SingleBank, hal.DualBank} {
			t.Run(b.name+"/"+string(s), func(t *testing.T) {
				l := b.layout(s)
				// Strict: core/boot must never program over bytes that
				// are not erased, whatever the kit asks of it.
				dev, err := flash.NewMemoryWith(l.Flash, flash.Options{Strict: true})
				if err != nil {
					t.Fatal(err)
				}
				conformancetest.Test(t, bootTarget(l, dev, boot.Options{}))
			})
		}
	}
}

// swapLayout is uniform-4k as MCUboot swap-move wants it: app one sector
// larger than ota.
func swapLayout() hal.Layout {
	b := bootBoards[0]
	b.parts[2], b.parts[3] = [2]uint64{0x6000, 0x1D000}, [2]uint64{0x23000, 0x1C000}
	l := b.layout(hal.Swap)
	l.Bootloader = hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeSwapMove}
	return l
}

// The kit passes on a swap board, in process and across the gRPC wire of a
// plugin.
func TestKit_BootPlatformSwap(t *testing.T) {
	l := swapLayout()
	dev, err := flash.NewMemoryWith(l.Flash, flash.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("in-process", func(t *testing.T) { conformancetest.Test(t, bootTarget(l, dev, boot.Options{})) })
	t.Run("grpc", func(t *testing.T) { conformancetest.Test(t, grpcTarget(t, l, dev)) })
}

func TestKit_BootPlatformOverFile(t *testing.T) {
	b := bootBoards[1]
	l := b.layout(hal.DualBank)
	path := filepath.Join(t.TempDir(), "stm32f4.flash")
	// Each start reopens the file: a power cycle of the emulated chip.
	open := func(ctx context.Context) (hal.Platform, func() error, error) {
		dev, err := flash.OpenFile(path, l.Flash)
		if err != nil {
			return nil, nil, err
		}
		p, err := boot.NewPlatform(l, dev, boot.Options{CloseDevice: true})
		if err != nil {
			dev.Close()
			return nil, nil, err
		}
		return p, p.Close, nil
	}
	conformancetest.Test(t, open)
}

func TestKit_BootPlatformWithKeys(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.NewChaCha8([32]byte{9}))
	if err != nil {
		t.Fatal(err)
	}
	l := bootBoards[0].layout(hal.DualBank)
	dev, err := flash.NewMemory(l.Flash)
	if err != nil {
		t.Fatal(err)
	}
	open := bootTarget(l, dev, boot.Options{Keys: []crypto.PublicKey{priv.Public()}})

	// Without the key the SetBoot case cannot make an image the port
	// trusts: skipped with the reason, not failed.
	var out bytes.Buffer
	_, failed := conformance.Run(t.Context(), open, &out)
	if failed != 0 || !strings.Contains(out.String(), "SKIP setboot/survives-restart: the port refuses a hash-only image") {
		t.Errorf("without a signer: %d failed, want the setboot case skipped:\n%s", failed, out.String())
	}
	out.Reset()
	passed, failed := conformance.RunWith(t.Context(), open, &out, conformance.Options{Signer: priv})
	if failed != 0 || passed != len(conformance.Names()) {
		t.Errorf("with the signer: %d passed, %d failed, want all %d passed:\n%s", passed, failed, len(conformance.Names()), out.String())
	}
}

func TestKit_BootPlatformOverGRPC(t *testing.T) {
	l := bootBoards[0].layout(hal.SingleBank)
	dev, err := flash.NewMemory(l.Flash)
	if err != nil {
		t.Fatal(err)
	}
	conformancetest.Test(t, grpcTarget(t, l, dev))
}

// grpcTarget starts boot.NewPlatform over dev behind a real gRPC
// connection at each call: error codes and data cross the wire as they do
// from a plugin process.
func grpcTarget(t *testing.T, l hal.Layout, dev flash.Device) conformance.Target {
	return func(ctx context.Context) (hal.Platform, func() error, error) {
		p, err := boot.NewPlatform(l, dev, boot.Options{})
		if err != nil {
			return nil, nil, err
		}
		c := plugintest.Conn(t, p)
		return c, func() error {
			if cl, ok := c.(interface{ Close() error }); ok {
				if err := cl.Close(); err != nil {
					return err
				}
			}
			return p.Close()
		}, nil
	}
}
