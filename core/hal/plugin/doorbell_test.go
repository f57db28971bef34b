package plugin

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin/internal/shm"
	halpb "github.com/otaport/otaport/core/hal/plugin/proto"
)

// memSlot is the smallest Platform that holds bytes: enough to see which
// path a read takes.
type memSlot struct {
	mu   sync.Mutex
	data []byte
}

func (m *memSlot) Describe(context.Context) (hal.Info, error)  { return hal.Info{}, nil }
func (m *memSlot) Init(context.Context, hal.InitRequest) error { return nil }
func (m *memSlot) SetBoot(context.Context, hal.BootRequest) error {
	return nil
}
func (m *memSlot) Rollback(context.Context) error { return nil }

func (m *memSlot) Write(_ context.Context, off uint64, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.data[off:], p)
	return nil
}

func (m *memSlot) Read(_ context.Context, off uint64, n int) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.data[off : off+uint64(n)]), nil
}

// olderPlugin serves the doorbell as a plugin built before reads went
// through it: it announces no features. It counts the reads that reach it
// over gRPC.
type olderPlugin struct {
	*grpcServer
	rpcReads atomic.Int32
}

func (o *olderPlugin) AttachSharedMemory(ctx context.Context, req *halpb.AttachRequest) (*halpb.AttachResponse, error) {
	res, err := o.grpcServer.AttachSharedMemory(ctx, req)
	if err == nil {
		o.mu.Lock()
		shm.BellOf(o.shm[res.GetId()].mem).Features.Store(0)
		o.mu.Unlock()
	}
	return res, err
}

func (o *olderPlugin) Read(ctx context.Context, req *halpb.ReadRequest) (*halpb.ReadResponse, error) {
	o.rpcReads.Add(1)
	return o.grpcServer.Read(ctx, req)
}

// TestDoorbell_NoReadsToAnOlderPlugin: a host reads over gRPC from a
// plugin that did not announce doorbell reads (it would take a read for a
// write of whatever the data area holds), and the slot is unchanged.
func TestDoorbell_NoReadsToAnOlderPlugin(t *testing.T) {
	if !shm.Doorbell {
		t.Skip("no doorbell on this system")
	}
	slot := &memSlot{data: make([]byte, 1<<20)}
	srv := &olderPlugin{grpcServer: newGRPCServer(slot)}
	c := serveTest(t, srv, srv.grpcServer)
	ctx := t.Context()
	want := bytes.Repeat([]byte("otaport!"), 1<<17)
	if err := c.Write(ctx, 0, want); err != nil {
		t.Fatal(err)
	}
	if c.shared == nil || !c.shared.bell || c.shared.read {
		t.Fatalf("shared memory attached %v, doorbell %v, reads %v: want the doorbell without reads",
			c.shared != nil, c.shared != nil && c.shared.bell, c.shared != nil && c.shared.read)
	}
	for range 3 {
		got, err := c.Read(ctx, 4096, 64<<10)
		if err != nil || !bytes.Equal(got, want[4096:4096+64<<10]) {
			t.Fatalf("read: %v (equal %v)", err, bytes.Equal(got, want[4096:4096+64<<10]))
		}
	}
	if n := srv.rpcReads.Load(); n != 3 {
		t.Errorf("%d reads over gRPC, want 3", n)
	}
	if !bytes.Equal(slot.data, want) {
		t.Error("the slot changed: a read went through the doorbell as a write")
	}
}

// serveTest serves srv as Pipe does and returns the host's client.
func serveTest(t *testing.T, srv halpb.PlatformServer, impl *grpcServer) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "hal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	lis, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(serverOptions()...)
	halpb.RegisterPlatformServer(gs, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(),
		append(dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(halpb.NewPlatformClient(conn), nil)
	c.closeFn = conn.Close
	t.Cleanup(func() {
		_ = c.Close()
		gs.Stop()
		<-served
		impl.close()
	})
	return c
}
