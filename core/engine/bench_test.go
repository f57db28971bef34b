package engine_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugintest"
)

// BenchmarkInstall measures the whole install path in one process: a
// loopback HTTP server, the engine (hash, signature, digest), the port
// (directly, or over a real gRPC connection as from a plugin), the flash
// emulator, the read-back. Bytes per second are of the image.
//
//	go test -run '^$' -bench Install -benchtime 5x ./core/engine/
func BenchmarkInstall(b *testing.B) {
	for _, c := range []struct {
		name string
		wire bool
	}{{"direct", false}, {"grpc", true}} {
		b.Run(c.name, func(b *testing.B) {
			k := boardKeys(b, "rpi4-b")
			d := newDevice(b, "rpi4-b", k)
			img := signed(b, k.priv, "2.0.0", 16<<20, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.ServeContent(w, r, "fw.img", fixedTime, bytesReader(img))
			}))
			defer srv.Close()
			var p hal.Platform = d.plat
			if c.wire {
				p = plugintest.Conn(b, d.plat)
			}
			e, err := engine.New(p, d.plat, engine.Options{Keys: k.pub, AllowDowngrade: true})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(img)))
			b.ResetTimer()
			for b.Loop() {
				if err := e.Install(context.Background(), engine.Source{URL: srv.URL + "/fw.img"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
