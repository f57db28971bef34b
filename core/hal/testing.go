package hal

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	halpb "github.com/otaport/otaport/core/hal/proto"
)

// TestConn serves p over a real gRPC connection on a Unix socket inside the
// test process and returns the host's side of it: the same *Client a
// plugin process gets from Open, so a port's tests (and the conformance
// kit) exercise the wire form of every call, the error codes and the
// shared-memory write path without building a plugin binary. It has no
// TLS and no process: crashes and SecureConfig are Open's to test. The
// connection is closed when the test ends.
func TestConn(t testing.TB, p Platform) Platform {
	t.Helper()
	// A short directory: Unix socket paths are limited to about 100 bytes,
	// which t.TempDir() can exceed.
	dir, err := os.MkdirTemp("", "hal")
	if err != nil {
		t.Fatalf("hal.TestConn: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	lis, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatalf("hal.TestConn: listen: %v", err)
	}
	impl := newGRPCServer(p)
	srv := grpc.NewServer(serverOptions()...)
	halpb.RegisterPlatformServer(srv, impl)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()

	conn, err := grpc.NewClient("unix://"+lis.Addr().String(),
		append(dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		srv.Stop()
		t.Fatalf("hal.TestConn: dial: %v", err)
	}
	c := newClient(halpb.NewPlatformClient(conn), nil)
	c.name = "port plugin (in-process)"
	c.closeFn = conn.Close
	t.Cleanup(func() {
		_ = c.Close()
		srv.Stop()
		<-served
		impl.close()
	})
	return c
}
