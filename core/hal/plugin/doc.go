// Package plugin runs a port as its own process: Serve is a port plugin's
// main, Open starts one and returns a *Client that implements hal.Platform
// (and hal.KV, hal.Rebooter when the port has them) over go-plugin's gRPC
// with mutual TLS. Writes and read-backs of an image travel through shared
// memory with a futex doorbell where the system has them (internal/shm),
// else through the gRPC stream; either way every hal.Code crosses intact.
//
// The wire form is proto/hal.proto. Pipe serves a platform over the same
// wire inside one process, which is what plugintest.Conn gives a test.
package plugin
