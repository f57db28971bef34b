// Package proto is the generated gRPC code of the port plugin service
// described in hal.proto. It is not an API of its own: core/hal/plugin wraps it
// behind hal.Platform, so only core/hal/plugin imports it.
//
// The generated files are committed so that building otaport never needs
// protoc; run go generate here after editing hal.proto.
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative hal.proto
