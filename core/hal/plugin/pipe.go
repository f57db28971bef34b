package plugin

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/otaport/otaport/core/hal"
	halpb "github.com/otaport/otaport/core/hal/plugin/proto"
)

// Pipe serves p over a real gRPC connection on a Unix socket inside this
// process and returns the host's side of it: the same *Client a plugin
// process gets from Open, with every call, error code and the shared-memory
// write path in their wire form, but no TLS and no process (crashes and
// SecureConfig are Open's). stop closes the client, then the server; it is
// what plugintest.Conn registers as a test clean-up.
func Pipe(p hal.Platform) (c *Client, stop func(), err error) {
	// A short directory: Unix socket paths are limited to about 100 bytes,
	// which a test's temporary directory can exceed.
	dir, err := os.MkdirTemp("", "hal")
	if err != nil {
		return nil, nil, fmt.Errorf("plugin pipe: %w", err)
	}
	lis, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("plugin pipe: listen: %w", err)
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
		<-served
		impl.close()
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("plugin pipe: dial: %w", err)
	}
	c = newClient(halpb.NewPlatformClient(conn), nil)
	c.name = "port plugin (in-process)"
	c.closeFn = conn.Close
	stop = func() {
		_ = c.Close()
		srv.Stop()
		<-served
		impl.close()
		_ = os.RemoveAll(dir)
	}
	return c, stop, nil
}
