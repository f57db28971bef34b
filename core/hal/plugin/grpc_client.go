package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin/internal/shm"
	halpb "github.com/otaport/otaport/core/hal/plugin/proto"
)

// DefaultCallTimeout bounds every call to a plugin when
// ClientConfig.CallTimeout is zero: long enough for a chip-size erase in
// Init, short enough that a hung plugin does not stall an upgrade forever.
const DefaultCallTimeout = 30 * time.Second

// sharedSize is the shared memory a host maps for Write: the control block
// and 4 MiB of data, which holds any chunk the engine writes; larger writes
// travel inline in the stream.
const sharedSize = shm.BellSize + 4<<20

// exitGrace is how long a call that lost its connection waits for the
// plugin process to be reaped, to tell "the plugin died" from a transport
// failure. A dying process closes its socket just before it is reaped.
const exitGrace = 2 * time.Second

// Client is the host's side of a port plugin: a Platform, KV and Rebooter
// whose calls cross the plugin boundary. Calls to KV or Reboot of a port
// without them answer ErrUnsupported (Info.Capabilities says which exist).
// A Client is safe for concurrent use; writes are serialized, in call order.
type Client struct {
	name        string // "port plugin otaport-x", the subject of transport errors
	rpc         halpb.PlatformClient
	callTimeout time.Duration
	logger      *slog.Logger

	// gone is closed when the plugin process has exited; exitErr then says
	// how. Both nil for an in-process connection (TestConn).
	gone    <-chan struct{}
	exitErr func() error

	closeOnce sync.Once
	closeFn   func() error
	life      context.Context // ends at Close; parent of write streams
	stop      context.CancelFunc

	wmu    sync.Mutex
	ws     *writeStream
	seq    uint64
	shared *hostShared // nil: write data travels inline
	noShm  bool        // do not try shared memory again
	noBell bool        // do not ask for the doorbell (tests of the stream path)
}

// writeStream is one Write stream; it is replaced after any failure.
type writeStream struct {
	s      halpb.Platform_WriteClient
	cancel context.CancelFunc
}

// hostShared is the host's mapping of the shared memory writes (and, with
// the doorbell, reads) go through.
type hostShared struct {
	id   uint64
	mem  []byte
	bell bool // the plugin serves the doorbell (doorbell.go)
	read bool // ... and reads on it
}

func newClient(rpc halpb.PlatformClient, gone <-chan struct{}) *Client {
	life, stop := context.WithCancel(context.Background())
	return &Client{
		name:        "port plugin",
		rpc:         rpc,
		callTimeout: DefaultCallTimeout,
		logger:      slog.New(slog.DiscardHandler),
		gone:        gone,
		life:        life,
		stop:        stop,
	}
}

// Close ends the connection and, for a plugin process, kills it.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		c.dropStream()
		if c.shared != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = c.rpc.DetachSharedMemory(ctx, &halpb.DetachRequest{Id: c.shared.id})
			cancel()
			_ = shm.Unmap(c.shared.mem)
			c.shared = nil
		}
		c.wmu.Unlock()
		c.stop()
		if c.closeFn != nil {
			err = c.closeFn()
		}
	})
	return err
}

// begin checks the plugin is still there and bounds the call by CallTimeout.
func (c *Client) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if c.life.Err() != nil {
		return nil, nil, fmt.Errorf("%s: closed", c.name)
	}
	if err := c.exited(0); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	return ctx, cancel, nil
}

// exited returns the plugin's exit as an error if it has exited, waiting up
// to wait for it.
func (c *Client) exited(wait time.Duration) error {
	if c.gone == nil {
		return nil
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-c.gone:
		case <-t.C:
			return nil
		}
	}
	select {
	case <-c.gone:
		return c.exitErr()
	default:
		return nil
	}
}

// fail turns the error of a call into what the caller gets: the port's own
// error unchanged, or what went wrong with the plugin, named.
func (c *Client) fail(parent, ctx context.Context, op func() string, err error) error {
	if perr, ok := fromStatus(err); ok {
		return perr
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.DeadlineExceeded && ctx.Err() == nil {
		// The plugin's copy of the deadline (grpc-timeout) can end a
		// unary call a moment before ours: wait for ours, which is due,
		// so that the error says which deadline it was.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < time.Second {
			<-ctx.Done()
		}
	}
	if parent.Err() != nil {
		return fmt.Errorf("%s: %s: %w", c.name, op(), parent.Err())
	}
	if ctx.Err() != nil {
		if xerr := c.exited(0); xerr != nil {
			return fmt.Errorf("%s: %w", op(), xerr)
		}
		return fmt.Errorf("%s: %s: no answer within %v (ClientConfig.CallTimeout): %w", c.name, op(), c.callTimeout, ctx.Err())
	}
	if c.life.Err() != nil {
		return fmt.Errorf("%s: %s: closed", c.name, op())
	}
	if xerr := c.exited(exitGrace); xerr != nil {
		return fmt.Errorf("%s: %w", op(), xerr)
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return fmt.Errorf("%s: %s: connection lost: %w", c.name, op(), err)
	}
	return fmt.Errorf("%s: %s: %w", c.name, op(), err)
}

func opName(s string) func() string { return func() string { return s } }

// Describe returns the port's layout, boot state and capabilities.
func (c *Client) Describe(ctx context.Context) (hal.Info, error) {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return hal.Info{}, err
	}
	defer cancel()
	pb, err := c.rpc.Describe(cctx, &halpb.Empty{})
	if err != nil {
		return hal.Info{}, c.fail(ctx, cctx, opName("describe"), err)
	}
	return infoFromPB(pb), nil
}

// Init prepares the update slot.
func (c *Client) Init(ctx context.Context, req hal.InitRequest) error {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := c.rpc.Init(cctx, &halpb.InitRequest{Size: req.Size, Resume: req.Resume}); err != nil {
		return c.fail(ctx, cctx, opName("init"), err)
	}
	return nil
}

// Write programs data at off and returns the outcome of this very write.
// The data travels through shared memory when the plugin attached it, and
// inline in the write stream otherwise; either way one request is
// answered by one result before Write returns.
func (c *Client) Write(ctx context.Context, off uint64, data []byte) error {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	op := func() string { return fmt.Sprintf("write at 0x%x", off) }

	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.shared == nil && !c.noShm && len(data) > 0 {
		c.attachShared(cctx)
	}
	fits := c.shared != nil && len(data) > 0 && len(data) <= len(c.shared.mem)-shm.BellSize
	if fits && c.shared.bell {
		werr, done := c.ringWrite(cctx, off, data)
		if !done {
			c.abandonShared()
			why := context.Cause(cctx)
			if why == nil {
				why = errors.New("no answer")
			}
			return c.fail(ctx, cctx, op, why)
		}
		return werr
	}
	ws, err := c.stream()
	if err != nil {
		return c.fail(ctx, cctx, op, err)
	}
	// A deadline or a cancellation tears the stream down, which unblocks
	// Send and Recv; the next Write opens a new one.
	stopWatch := context.AfterFunc(cctx, ws.cancel)

	c.seq++
	req := &halpb.WriteRequest{Seq: c.seq, Offset: off}
	if dl, ok := cctx.Deadline(); ok {
		req.TimeoutNs = int64(time.Until(dl))
	}
	inShared := fits
	if inShared {
		copy(c.shared.mem[shm.BellSize:], data)
		req.ShmId, req.ShmLength = c.shared.id, uint64(len(data))
	} else {
		req.Data = data
	}
	res, err := c.roundTrip(ws, req)
	if !stopWatch() || err != nil {
		// The stream is dead or about to be. If the plugin may still be
		// reading the shared memory, the next write must not overwrite it.
		c.dropStream()
		if err != nil && inShared {
			c.abandonShared()
		}
	}
	if err != nil {
		return c.fail(ctx, cctx, op, err)
	}
	if res.GetSeq() != req.Seq {
		c.dropStream()
		return fmt.Errorf("%s: %s: answer to write %d came for write %d", c.name, op(), req.Seq, res.GetSeq())
	}
	return errorFromPB(res.GetError())
}

func (c *Client) roundTrip(ws *writeStream, req *halpb.WriteRequest) (*halpb.WriteResult, error) {
	if err := ws.s.Send(req); err != nil {
		if errors.Is(err, io.EOF) {
			// The stream ended; its status is what Recv returns.
			_, err = ws.s.Recv()
		}
		return nil, err
	}
	return ws.s.Recv()
}

// stream returns the open write stream or opens one. Called with wmu held.
func (c *Client) stream() (*writeStream, error) {
	if c.ws != nil {
		return c.ws, nil
	}
	ctx, cancel := context.WithCancel(c.life)
	s, err := c.rpc.Write(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c.ws = &writeStream{s: s, cancel: cancel}
	return c.ws, nil
}

// dropStream closes the write stream. Called with wmu held.
func (c *Client) dropStream() {
	if c.ws != nil {
		c.ws.cancel()
		c.ws = nil
	}
}

// attachShared creates shared memory and has the plugin map it. Failure is
// not an error: writes go inline. Called with wmu held.
func (c *Client) attachShared(ctx context.Context) {
	mem, path, dir, err := shm.Create(sharedSize)
	if err != nil {
		c.noShm = true
		c.logger.Debug("port plugin: no shared memory, write data goes inline", "error", err)
		return
	}
	defer os.RemoveAll(dir)
	res, err := c.rpc.AttachSharedMemory(ctx, &halpb.AttachRequest{Path: path, Size: sharedSize, Doorbell: shm.Doorbell && !c.noBell})
	if err != nil {
		_ = shm.Unmap(mem)
		c.noShm = true
		c.logger.Debug("port plugin: shared memory refused, write data goes inline", "plugin", c.name, "error", err)
		return
	}
	bell := res.GetDoorbell()
	c.shared = &hostShared{id: res.GetId(), mem: mem, bell: bell,
		read: bell && shm.BellOf(mem).Features.Load()&shm.FeatureRead != 0}
}

// abandonShared gives up the shared memory after a write that got no
// answer: the plugin may still read it. The plugin unmaps it once that
// write returns; the next Write attaches a fresh one. Called with wmu held.
func (c *Client) abandonShared() {
	old := c.shared
	c.shared = nil
	_ = shm.Unmap(old.mem)
	go func() {
		ctx, cancel := context.WithTimeout(c.life, time.Second)
		defer cancel()
		_, _ = c.rpc.DetachSharedMemory(ctx, &halpb.DetachRequest{Id: old.id})
	}()
}

// Read reads n bytes at off in the update slot. A read that fits the
// shared memory goes through the doorbell when the plugin serves reads on
// it (the engine reads a whole image back this way); any other is a unary
// gRPC call.
func (c *Client) Read(ctx context.Context, off uint64, n int) ([]byte, error) {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	op := func() string { return fmt.Sprintf("read %d bytes at 0x%x", n, off) }
	if c.sharedReads(cctx, n) {
		data := make([]byte, n)
		got, err := c.readShared(ctx, cctx, op, off, data)
		if err != nil {
			return nil, err
		}
		return data[:got], nil
	}
	return c.readRPC(ctx, cctx, op, &halpb.ReadRequest{Offset: off, Length: int64(n)})
}

// ReadInto reads len(p) bytes at off in the update slot into p: Read for a
// caller that reuses its buffers, as the engine does when it reads a whole
// image back. Through the doorbell the bytes go from the shared memory
// straight into p; otherwise it is Read and a copy. A port that returns
// another number of bytes than asked is an error.
func (c *Client) ReadInto(ctx context.Context, off uint64, p []byte) error {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	op := func() string { return fmt.Sprintf("read %d bytes at 0x%x", len(p), off) }
	var got int
	if c.sharedReads(cctx, len(p)) {
		got, err = c.readShared(ctx, cctx, op, off, p)
	} else {
		var data []byte
		data, err = c.readRPC(ctx, cctx, op, &halpb.ReadRequest{Offset: off, Length: int64(len(p))})
		got = copy(p, data)
		if len(data) != len(p) {
			got = len(data)
		}
	}
	if err == nil && got != len(p) {
		err = hal.Errorf(hal.CodeInvalid, "%s: the port returned %d bytes", op(), got)
	}
	return err
}

// ReadSlot reads n bytes at off in the image slot called slot (hal.SlotReader),
// always as a unary gRPC call: the engine reads a delta's base in small
// windows, which the doorbell, kept for the update slot's read-back, would
// not speed up. A port without the capability answers ErrUnsupported.
func (c *Client) ReadSlot(ctx context.Context, slot string, off uint64, n int) ([]byte, error) {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	op := func() string { return fmt.Sprintf("read %d bytes at 0x%x in %s", n, off, slot) }
	return c.readRPC(ctx, cctx, op, &halpb.ReadRequest{Offset: off, Length: int64(n), Slot: slot})
}

// readRPC is Read (of the slot req names) as a unary gRPC call.
func (c *Client) readRPC(parent, ctx context.Context, op func() string, req *halpb.ReadRequest) ([]byte, error) {
	res, err := c.rpc.Read(ctx, req)
	if err != nil {
		return nil, c.fail(parent, ctx, op, err)
	}
	data := res.GetData()
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// sharedReads reports whether a read of n bytes goes through the
// doorbell: it fits the shared memory and the plugin serves reads there.
// It attaches the shared memory on the first call.
func (c *Client) sharedReads(ctx context.Context, n int) bool {
	if n <= 0 || n > sharedSize-shm.BellSize {
		return false
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.shared == nil && !c.noShm {
		c.attachShared(ctx)
	}
	return c.shared != nil && c.shared.read
}

// readShared reads len(p) bytes at off through the doorbell into p and
// returns how many the port read.
func (c *Client) readShared(parent, ctx context.Context, op func() string, off uint64, p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.shared == nil || !c.shared.read {
		// Given up since sharedReads (a write that got no answer):
		// the next call attaches afresh.
		data, err := c.readRPC(parent, ctx, op, &halpb.ReadRequest{Offset: off, Length: int64(len(p))})
		if err != nil {
			return 0, err
		}
		if len(data) > len(p) {
			return 0, hal.Errorf(hal.CodeInvalid, "%s: the port returned %d bytes", op(), len(data))
		}
		return copy(p, data), nil
	}
	n, err, done := c.ringRead(ctx, off, p)
	if !done {
		c.abandonShared()
		why := context.Cause(ctx)
		if why == nil {
			why = errors.New("no answer")
		}
		return 0, c.fail(parent, ctx, op, why)
	}
	return n, err
}

// SetBoot tells the bootloader what to do at the next boot.
func (c *Client) SetBoot(ctx context.Context, req hal.BootRequest) error {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := c.rpc.SetBoot(cctx, &halpb.BootRequest{Mode: int32(req.Mode), Size: req.Size}); err != nil {
		return c.fail(ctx, cctx, func() string { return "set boot " + req.Mode.String() }, err)
	}
	return nil
}

// Rollback returns to the previous image.
func (c *Client) Rollback(ctx context.Context) error {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := c.rpc.Rollback(cctx, &halpb.Empty{}); err != nil {
		return c.fail(ctx, cctx, opName("rollback"), err)
	}
	return nil
}

// Get returns the value of key in the port's key-value store.
func (c *Client) Get(ctx context.Context, key string) ([]byte, bool, error) {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer cancel()
	res, err := c.rpc.Get(cctx, &halpb.GetRequest{Key: key})
	if err != nil {
		return nil, false, c.fail(ctx, cctx, func() string { return fmt.Sprintf("kv get %q", key) }, err)
	}
	if !res.GetFound() {
		return nil, false, nil
	}
	v := res.GetValue()
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// Set stores value under key; a nil value deletes the key.
func (c *Client) Set(ctx context.Context, key string, value []byte) error {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := c.rpc.Set(cctx, &halpb.SetRequest{Key: key, Value: value, Delete: value == nil}); err != nil {
		return c.fail(ctx, cctx, func() string { return fmt.Sprintf("kv set %q", key) }, err)
	}
	return nil
}

// Reboot resets the device (on the emulator: runs the simulated bootloader).
func (c *Client) Reboot(ctx context.Context) (hal.RebootResult, error) {
	cctx, cancel, err := c.begin(ctx)
	if err != nil {
		return hal.RebootResult{}, err
	}
	defer cancel()
	r, err := c.rpc.Reboot(cctx, &halpb.Empty{})
	if err != nil {
		return hal.RebootResult{}, c.fail(ctx, cctx, opName("reboot"), err)
	}
	return hal.RebootResult{Slot: r.GetSlot(), Version: r.GetVersion(), Action: r.GetAction(), Detail: r.GetDetail()}, nil
}

// Interface guards.
var (
	_ hal.Platform   = (*Client)(nil)
	_ hal.KV         = (*Client)(nil)
	_ hal.Rebooter   = (*Client)(nil)
	_ hal.SlotReader = (*Client)(nil)
)
