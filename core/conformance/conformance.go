// Package conformance is the port conformance kit: the behaviour every
// otaport port must show through the hal.Platform contract, checked against
// a running port. Go tests call conformancetest.Test; otarun conformance
// calls Run. Both run one list of cases, so a port that passes its go test passes in the field
// tool, and the other way round.
//
// The kit only drives the contract: it does not know how the port stores
// anything. It writes random data from a seed (so a lost bit shows), reads
// it back, restarts the port (a plugin restart or power-on over the same
// flash) to check what must survive, and checks that bad requests are
// refused with the right hal.Code. Optional capabilities a port does not
// list in Info.Capabilities are skipped, not failed.
//
// It is not a test of the upgrade as a whole (core/engine's tests) nor of
// the bootloader's power-cut safety (core/boot's sweeps); it never reboots
// the device, so it leaves the running image alone.
package conformance

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"slices"

	"github.com/otaport/otaport/core/hal"
)

// Target starts the port under test. Each call is a fresh start, a plugin
// restart or a power-on, over the same flash: what the port persisted must
// be there again. closeFn stops that instance; the kit calls it before the
// next start.
type Target func(ctx context.Context) (p hal.Platform, closeFn func() error, err error)

// Options tunes a run. The zero value suits a port built on core/boot
// without keys.
type Options struct {
	// Signer signs the images the SetBoot cases write. Leave it nil for a
	// port that accepts hash-only images; a port that requires signatures
	// then has those cases skipped, with a message saying so.
	Signer crypto.Signer
	// Seed seeds the random data. Runs with the same seed write the same
	// bytes, so a failure reproduces; 0 is a fixed default.
	Seed uint64
}

// Case is one behaviour of the contract, runnable on its own: a test runs
// each as a subtest (conformancetest.Test), otarun prints one line each.
type Case struct{ c testCase }

// Cases returns the cases, in the order they run.
func Cases() []Case {
	var cs []Case
	for _, c := range cases() {
		cs = append(cs, Case{c})
	}
	return cs
}

// Name is the case's name ("write/read-back").
func (c Case) Name() string { return c.c.name }

// Run starts the port, runs the case and stops the port. skip is the reason
// the port cannot run it (a capability it does not list), err what it did
// instead of the contract's behaviour.
func (c Case) Run(ctx context.Context, open Target, opts Options) (skip string, err error) {
	return runCase(ctx, open, opts, c.c)
}

// Run runs every case against the port open starts and writes one line per
// case to w: "PASS name", "FAIL name: reason" or "SKIP name: reason". It
// returns the counts of passed and failed cases (skipped ones are neither);
// the caller prints the summary. Run stops early only when ctx is done.
func Run(ctx context.Context, open Target, w io.Writer) (passed, failed int) {
	return RunWith(ctx, open, w, Options{})
}

// RunWith is Run with options.
func RunWith(ctx context.Context, open Target, w io.Writer, opts Options) (passed, failed int) {
	for _, c := range cases() {
		if ctx.Err() != nil {
			fmt.Fprintf(w, "FAIL %s: %v\n", c.name, context.Cause(ctx))
			failed++
			continue
		}
		skip, err := runCase(ctx, open, opts, c)
		switch {
		case err != nil:
			fmt.Fprintf(w, "FAIL %s: %v\n", c.name, err)
			failed++
		case skip != "":
			fmt.Fprintf(w, "SKIP %s: %s\n", c.name, skip)
		default:
			fmt.Fprintf(w, "PASS %s\n", c.name)
			passed++
		}
	}
	return passed, failed
}

// Names returns the names of the cases, in the order they run.
func Names() []string {
	var names []string
	for _, c := range Cases() {
		names = append(names, c.Name())
	}
	return names
}

// testCase is one behaviour of the contract. A case returns nil when the
// port behaves, an error saying what it did instead, or skipf(...) when the
// port lacks what the case needs.
type testCase struct {
	name string
	// needs is the capability the case needs ("kv"), or "".
	needs string
	run   func(ctx context.Context, e *env) error
}

// skipError marks a case the port cannot run.
type skipError struct{ reason string }

func (s *skipError) Error() string { return "skipped: " + s.reason }

func skipf(format string, args ...any) error {
	return &skipError{reason: fmt.Sprintf(format, args...)}
}

// runCase starts the port, runs c, and stops the port. A panic in the port
// (in-process ports panic in the kit's goroutine) fails the case rather than
// the whole run.
func runCase(ctx context.Context, open Target, opts Options, c testCase) (skip string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	seed := opts.Seed
	if seed == 0 {
		seed = 0x07a9077
	}
	h := fnv.New64a()
	h.Write([]byte(c.name))
	e := &env{open: open, opts: opts, rng: rand.New(rand.NewPCG(seed, h.Sum64()))}
	if err := e.start(ctx); err != nil {
		return "", err
	}
	defer func() {
		if cerr := e.stop(); cerr != nil && err == nil {
			err = fmt.Errorf("close the port: %w", cerr)
		}
	}()
	if c.needs != "" && !slices.Contains(e.info.Capabilities, c.needs) {
		return fmt.Sprintf("the port does not list capability %q (capabilities %v)", c.needs, e.info.Capabilities), nil
	}
	err = c.run(ctx, e)
	var s *skipError
	if errors.As(err, &s) {
		return s.reason, nil
	}
	return "", err
}

// env is a started port and what the kit knows of it.
type env struct {
	open    Target
	opts    Options
	rng     *rand.Rand
	p       hal.Platform
	closeFn func() error

	info   hal.Info
	slot   hal.Partition // the update slot: where Write and Read go
	align  uint64
	erased byte
}

// start starts the port and describes it.
func (e *env) start(ctx context.Context) error {
	p, closeFn, err := e.open(ctx)
	if err != nil {
		return fmt.Errorf("start the port: %w", err)
	}
	if p == nil {
		if closeFn != nil {
			_ = closeFn()
		}
		return errors.New("start the port: the target returned no platform and no error")
	}
	e.p, e.closeFn = p, closeFn
	info, err := p.Describe(ctx)
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	e.info = info
	e.align = uint64(info.Layout.Flash.WriteAlign)
	if e.align == 0 {
		e.align = 1 // Describe's case reports it; the others still run
	}
	e.erased = info.Layout.Flash.EraseValue
	slot, err := updateSlot(info)
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	e.slot = slot
	return nil
}

// stop stops the port.
func (e *env) stop() error {
	if e.p == nil {
		return nil
	}
	e.p = nil
	if e.closeFn == nil {
		return nil
	}
	return e.closeFn()
}

// restart stops the port and starts it again over the same flash.
func (e *env) restart(ctx context.Context) error {
	if err := e.stop(); err != nil {
		return fmt.Errorf("restart: close the port: %w", err)
	}
	if err := e.start(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// updateSlot returns the partition Write and Read address (hal.Info's
// rule), refusing one of size 0, into which no case can write. On an
// MCUboot board it is the part an image may fill (hal.Info.MaxImageSize):
// the slot's end holds MCUboot's trailer, which only boot requests write.
func updateSlot(info hal.Info) (hal.Partition, error) {
	p, err := info.UpdateSlot()
	if err != nil {
		return hal.Partition{}, err
	}
	if info.Layout.Scheme == hal.Swap || info.Layout.Bootloader.Name == hal.BootloaderMCUboot {
		n, err := info.MaxImageSize()
		if err != nil {
			return hal.Partition{}, err
		}
		p.Size = min(p.Size, n)
	}
	if p.Size == 0 {
		return hal.Partition{}, fmt.Errorf("layout of board %q: partition %q has size 0", info.Layout.Board, p.Name)
	}
	return p, nil
}

// data returns n random bytes.
func (e *env) data(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := e.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// up rounds n up to the write alignment.
func (e *env) up(n uint64) uint64 { return (n + e.align - 1) / e.align * e.align }

// ioChunk bounds the bytes one Write or Read call carries, well under any
// RPC message limit.
const ioChunk = 64 << 10

// write writes data at off in chunks; every chunk but the last has an
// aligned length.
func (e *env) write(ctx context.Context, off uint64, data []byte) error {
	step := max(ioChunk/e.align*e.align, e.align)
	for len(data) > 0 {
		n := min(uint64(len(data)), step)
		if err := e.p.Write(ctx, off, data[:n]); err != nil {
			return fmt.Errorf("write %s at 0x%x, %d bytes: %w", e.slot.Name, off, n, err)
		}
		off, data = off+n, data[n:]
	}
	return nil
}

// read reads n bytes at off in chunks.
func (e *env) read(ctx context.Context, off uint64, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for len(out) < n {
		c := min(n-len(out), ioChunk)
		b, err := e.p.Read(ctx, off+uint64(len(out)), c)
		if err != nil {
			return nil, fmt.Errorf("read %s at 0x%x, %d bytes: %w", e.slot.Name, off+uint64(len(out)), c, err)
		}
		if len(b) != c {
			return nil, fmt.Errorf("read %s at 0x%x, %d bytes: got %d bytes", e.slot.Name, off+uint64(len(out)), c, len(b))
		}
		out = append(out, b...)
	}
	return out, nil
}

// expect reads len(want) bytes at off and says where they differ.
func (e *env) expect(ctx context.Context, off uint64, want []byte, what string) error {
	got, err := e.read(ctx, off, len(want))
	if err != nil {
		return err
	}
	return diff(e.slot.Name, off, got, want, what)
}

// expectErased checks that [off, off+n) reads as the erased value.
func (e *env) expectErased(ctx context.Context, off uint64, n int, what string) error {
	want := make([]byte, n)
	for i := range want {
		want[i] = e.erased
	}
	return e.expect(ctx, off, want, what)
}

// diff describes how got differs from want, or returns nil.
func diff(slot string, off uint64, got, want []byte, what string) error {
	first, count := -1, 0
	for i := range want {
		if got[i] != want[i] {
			if first < 0 {
				first = i
			}
			count++
		}
	}
	if count == 0 {
		return nil
	}
	return fmt.Errorf("%s: %d of %d bytes at %s 0x%x read back wrong; first at 0x%x: got 0x%02x, want 0x%02x",
		what, count, len(want), slot, off, off+uint64(first), got[first], want[first])
}

// wantCode checks that err is a refusal with one of the codes.
func wantCode(err error, what string, codes ...hal.Code) error {
	if err == nil {
		return fmt.Errorf("%s: accepted, want it refused with %s", what, codeList(codes))
	}
	if slices.Contains(codes, hal.CodeOf(err)) {
		return nil
	}
	return fmt.Errorf("%s: refused with code %q, want %s (error: %v)", what, hal.CodeOf(err), codeList(codes), err)
}

func codeList(codes []hal.Code) string {
	s := ""
	for i, c := range codes {
		if i > 0 {
			s += " or "
		}
		s += fmt.Sprintf("%q", c.String())
	}
	return s
}
