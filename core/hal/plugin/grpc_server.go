package plugin

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin/internal/shm"
	halpb "github.com/otaport/otaport/core/hal/plugin/proto"
)

// Capability names a port lists in Info.Capabilities.
const (
	CapKV     = "kv"
	CapReboot = "reboot"
)

// grpcServer is the plugin side of the boundary: it serves a Platform, and
// its KV and Rebooter when it has them, to the host.
type grpcServer struct {
	halpb.UnimplementedPlatformServer
	impl hal.Platform
	kv   hal.KV         // nil when impl has no key-value store
	reb  hal.Rebooter   // nil when impl cannot reboot
	sr   hal.SlotReader // nil when impl reads only the update slot

	mu     sync.Mutex
	nextID uint64
	shm    map[uint64]*mapping
}

func newGRPCServer(p hal.Platform) *grpcServer {
	s := &grpcServer{impl: p, shm: map[uint64]*mapping{}}
	s.kv, _ = p.(hal.KV)
	s.reb, _ = p.(hal.Rebooter)
	s.sr, _ = p.(hal.SlotReader)
	return s
}

// capabilities corrects what the port claims with what it implements: the
// host calls KV, Reboot and ReadSlot only through this server, so a claim without the
// method would only produce ErrUnsupported later, and a method without the
// claim would go unused.
func (s *grpcServer) capabilities(claimed []string) []string {
	out := slices.DeleteFunc(slices.Clone(claimed), func(c string) bool { return c == CapKV || c == CapReboot || c == hal.CapReadSlot })
	if s.kv != nil {
		out = append(out, CapKV)
	}
	if s.reb != nil {
		out = append(out, CapReboot)
	}
	if s.sr != nil {
		out = append(out, hal.CapReadSlot)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (s *grpcServer) Describe(ctx context.Context, _ *halpb.Empty) (*halpb.Info, error) {
	info, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	info.Capabilities = s.capabilities(info.Capabilities)
	return infoToPB(info), nil
}

func (s *grpcServer) Init(ctx context.Context, req *halpb.InitRequest) (*halpb.Empty, error) {
	err := s.impl.Init(ctx, hal.InitRequest{Size: req.GetSize(), Resume: req.GetResume()})
	return &halpb.Empty{}, toStatus(err)
}

// Write answers each request of the stream in order with the outcome of
// that write; only a broken stream ends it with an error.
func (s *grpcServer) Write(stream halpb.Platform_WriteServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		werr := s.write(ctx, req)
		if err := stream.Send(&halpb.WriteResult{Seq: req.GetSeq(), Error: errorToPB(werr)}); err != nil {
			return err
		}
	}
}

func (s *grpcServer) write(ctx context.Context, req *halpb.WriteRequest) error {
	if t := req.GetTimeoutNs(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t))
		defer cancel()
	}
	n := req.GetShmLength()
	if n == 0 {
		return s.impl.Write(ctx, req.GetOffset(), req.GetData())
	}
	m, err := s.acquire(req.GetShmId(), n)
	if err != nil {
		return err
	}
	defer s.release(m)
	return s.impl.Write(ctx, req.GetOffset(), m.mem[shm.BellSize:][:n])
}

func (s *grpcServer) Read(ctx context.Context, req *halpb.ReadRequest) (*halpb.ReadResponse, error) {
	var data []byte
	var err error
	switch {
	case req.GetSlot() == "":
		data, err = s.impl.Read(ctx, req.GetOffset(), int(req.GetLength()))
	case s.sr == nil:
		err = hal.Errorf(hal.CodeUnsupported, "read slot %s: the port reads only its update slot (no %q capability): send full images, not deltas", req.GetSlot(), hal.CapReadSlot)
	default:
		data, err = s.sr.ReadSlot(ctx, req.GetSlot(), req.GetOffset(), int(req.GetLength()))
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &halpb.ReadResponse{Data: data}, nil
}

func (s *grpcServer) SetBoot(ctx context.Context, req *halpb.BootRequest) (*halpb.Empty, error) {
	err := s.impl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootMode(req.GetMode()), Size: req.GetSize()})
	return &halpb.Empty{}, toStatus(err)
}

func (s *grpcServer) Rollback(ctx context.Context, _ *halpb.Empty) (*halpb.Empty, error) {
	return &halpb.Empty{}, toStatus(s.impl.Rollback(ctx))
}

func (s *grpcServer) Get(ctx context.Context, req *halpb.GetRequest) (*halpb.GetResponse, error) {
	if s.kv == nil {
		return nil, toStatus(hal.Errorf(hal.CodeUnsupported, "kv get %q: port has no key-value store", req.GetKey()))
	}
	v, ok, err := s.kv.Get(ctx, req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &halpb.GetResponse{Value: v, Found: ok}, nil
}

func (s *grpcServer) Set(ctx context.Context, req *halpb.SetRequest) (*halpb.Empty, error) {
	if s.kv == nil {
		return nil, toStatus(hal.Errorf(hal.CodeUnsupported, "kv set %q: port has no key-value store", req.GetKey()))
	}
	v := req.GetValue()
	switch {
	case req.GetDelete():
		v = nil
	case v == nil:
		v = []byte{} // an empty value is a value, not a deletion
	}
	return &halpb.Empty{}, toStatus(s.kv.Set(ctx, req.GetKey(), v))
}

func (s *grpcServer) Reboot(ctx context.Context, _ *halpb.Empty) (*halpb.RebootResult, error) {
	if s.reb == nil {
		return nil, toStatus(hal.Errorf(hal.CodeUnsupported, "reboot: port cannot reboot"))
	}
	r, err := s.reb.Reboot(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &halpb.RebootResult{Slot: r.Slot, Version: r.Version, Action: r.Action, Detail: r.Detail}, nil
}

func (s *grpcServer) AttachSharedMemory(_ context.Context, req *halpb.AttachRequest) (*halpb.AttachResponse, error) {
	if req.GetSize() <= shm.BellSize {
		return nil, toStatus(hal.Errorf(hal.CodeInvalid, "attach shared memory: %d bytes leave no room past the %d-byte control block", req.GetSize(), shm.BellSize))
	}
	mem, err := shm.Map(req.GetPath(), req.GetSize())
	if err != nil {
		// A file of the wrong size is a bad request; anything else means this
		// plugin cannot share memory, and the host falls back to the stream.
		code := hal.CodeUnsupported
		if errors.Is(err, shm.ErrSize) {
			code = hal.CodeInvalid
		}
		return nil, toStatus(&hal.Error{Code: code, Msg: err.Error()})
	}
	m := &mapping{mem: mem}
	bell := req.GetDoorbell() && shm.Doorbell
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.shm[s.nextID] = m
	if bell {
		// Announced before the host learns of the mapping (it reads
		// the features once this call returns).
		shm.BellOf(m.mem).Features.Store(shm.FeatureRead)
		m.refs++ // the loop's, released when it stops
		// Read the sequence now, before the host can learn of the mapping:
		// read inside the goroutine, a first request stored before it ran
		// would pass for one already served, and the host would wait forever.
		go s.serveBell(m, shm.BellOf(m.mem).Req.Load())
	}
	return &halpb.AttachResponse{Id: s.nextID, Doorbell: bell}, nil
}

func (s *grpcServer) DetachSharedMemory(_ context.Context, req *halpb.DetachRequest) (*halpb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.shm[req.GetId()]
	if !ok {
		return &halpb.Empty{}, nil
	}
	delete(s.shm, req.GetId())
	s.detach(m)
	return &halpb.Empty{}, nil
}

// close unmaps every mapping no write still uses (TestConn's cleanup; a
// plugin process simply exits).
func (s *grpcServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, m := range s.shm {
		delete(s.shm, id)
		s.detach(m)
	}
}

// detach stops m's doorbell loop, if any, and unmaps m once nothing uses
// it. Called with mu held.
func (s *grpcServer) detach(m *mapping) {
	m.detached = true
	if m.refs == 0 {
		_ = shm.Unmap(m.mem)
		return
	}
	b := shm.BellOf(m.mem)
	b.Closing.Store(1)
	shm.WakeAll(&b.Req)
}

// mapping is one shared memory region. A write holds a reference while the
// port reads from it, so a detach (after the host gave up on a hung write)
// never unmaps memory under the port's feet.
type mapping struct {
	mem      []byte
	refs     int
	detached bool
}

func (s *grpcServer) acquire(id, n uint64) (*mapping, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.shm[id]
	if !ok {
		return nil, hal.Errorf(hal.CodeInvalid, "write: shared memory %d is not attached", id)
	}
	if n > uint64(len(m.mem)-shm.BellSize) {
		return nil, hal.Errorf(hal.CodeInvalid, "write: %d bytes exceed the %d bytes of shared memory %d", n, len(m.mem)-shm.BellSize, id)
	}
	m.refs++
	return m, nil
}

func (s *grpcServer) release(m *mapping) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.refs--
	if m.refs == 0 && m.detached {
		_ = shm.Unmap(m.mem)
	}
}
