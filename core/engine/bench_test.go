package engine_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/otaport/otaport/core/delta"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
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

// BenchmarkInstall_Delta applies a delta image of a 1000 KiB firmware's next
// build on esp32-devkitc (4 KiB sectors) through the whole install path,
// and reports what the issue bounds: the engine's apply memory (the
// decoder's state and its one erase-sector buffer: state-B, buffer-B) and
// the largest checkpoint it persisted during the download (the decoder's,
// checkpoint-B, and the whole device record holding it, record-B). Bytes
// per second are of the target image.
//
//	go test -run '^$' -bench Install_Delta -benchtime 5x ./core/engine/
func BenchmarkInstall_Delta(b *testing.B) {
	ctx := context.Background()
	// The far case: half the target new, so that the download crosses
	// block boundaries of the patch where it checkpoints.
	c := newDeltaCaseFar(b, "esp32-devkitc", 1000<<10, delta.DefaultBlockLog, true)
	info, err := c.d.plat.Describe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	state, buf := engine.DeltaMemory(info)
	src := writeFile(b, c.delta)
	base := c.d.dev.Clone()
	var ckMax, recMax int
	// A checkpoint at every block boundary of the patch.
	opts := engine.Options{ChunkSize: 4 << 10, CheckpointEvery: 1}
	opts.Observer = engine.ObserverFunc(func(ev engine.Event) {
		if ev.Kind != event.Progress {
			return
		}
		raw, ok, err := c.d.plat.Get(ctx, "otaport.device")
		if err != nil || !ok {
			return
		}
		var rec struct {
			Patch []byte `json:"patch"`
		}
		if json.Unmarshal(raw, &rec) == nil {
			ckMax, recMax = max(ckMax, len(rec.Patch)), max(recMax, len(raw))
		}
	})
	b.SetBytes(int64(len(c.target)))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		c.d.powerOn(base.Clone())
		b.StartTimer()
		if err := c.d.engine(opts).Install(ctx, engine.Source{URL: src}); err != nil {
			b.Fatal(err)
		}
	}
	if ckMax == 0 {
		b.Fatal("no delta checkpoint was persisted during the download")
	}
	b.ReportMetric(float64(state), "state-B")
	b.ReportMetric(float64(buf), "buffer-B")
	b.ReportMetric(float64(ckMax), "checkpoint-B")
	b.ReportMetric(float64(recMax), "record-B")
	b.ReportMetric(float64(len(c.delta))/float64(len(c.target))*100, "delta-%")
}

// An install holds buffers for what it downloads, not four of the chunk
// size whatever the image: a 16 KiB image with the default 256 KiB chunks
// allocated 1 MiB of them, which a fleet simulator running thousands of
// installs at once paid per device.
func TestInstall_SmallImageSmallBuffers(t *testing.T) {
	k := boardKeys(t, "b-l475e-iot01a")
	d := newDevice(t, "b-l475e-iot01a", k)
	img := signed(t, k.priv, "2.0.0", 16<<10, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "fw.img", fixedTime, bytesReader(img))
	}))
	defer srv.Close()
	e, err := engine.New(d.plat, d.plat, engine.Options{Keys: k.pub, AllowDowngrade: true})
	if err != nil {
		t.Fatal(err)
	}
	install := func() {
		t.Helper()
		if err := e.Install(context.Background(), engine.Source{URL: srv.URL + "/fw.img", Size: int64(len(img))}); err != nil {
			t.Fatal(err)
		}
	}
	install() // the first one fills the HTTP server's and client's one-time tables
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	install()
	runtime.ReadMemStats(&after)
	// The rest of the install (HTTP, hashing, the port's writes) allocates
	// well under one default chunk.
	if got := after.TotalAlloc - before.TotalAlloc; got >= engine.DefaultChunkSize {
		t.Errorf("installing a %d-byte image allocated %d bytes; want under %d, one default chunk", len(img), got, engine.DefaultChunkSize)
	}
}
