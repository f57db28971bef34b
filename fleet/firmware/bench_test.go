package firmware

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/otaport/otaport/fleet/store"
)

// BenchmarkHandler_Download: a device's download of a 1 MiB image, whole,
// from the directory, from PostgreSQL, and from a replica's local copy of
// PostgreSQL's blob.
//
//	go test ./fleet/firmware -run '^$' -bench Handler_Download -benchtime 2s
func BenchmarkHandler_Download(b *testing.B) {
	for _, be := range []string{"dir", "postgres", "cached"} {
		b.Run(be, func(b *testing.B) {
			url, data := benchServer(b, be, 1<<20)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if n := download(b, url, ""); n != int64(len(data)) {
					b.Fatalf("%d bytes", n)
				}
			}
		})
	}
}

// BenchmarkHandler_Range: Range requests of 256 KiB (a resumed download's
// piece, across two of PostgreSQL's chunks) at moving offsets of a 4 MiB
// image, one at a time and 32 at once (many devices downloading), from
// PostgreSQL and from the local copy.
//
//	go test ./fleet/firmware -run '^$' -bench Handler_Range -benchtime 2s
func BenchmarkHandler_Range(b *testing.B) {
	const size, piece = 4 << 20, 256 << 10
	for _, be := range []string{"postgres", "cached"} {
		for _, par := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/concurrent-%d", be, par), func(b *testing.B) {
				url, _ := benchServer(b, be, size)
				b.SetBytes(piece)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range par {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							off := (i*store.ChunkSize + 1000) % (size - piece)
							if n := download(b, url, fmt.Sprintf("bytes=%d-%d", off, off+piece-1)); n != piece {
								b.Errorf("%d bytes", n)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}

// benchServer stores size bytes in a store of the kind, serves it, and
// downloads it once (which fills the cache), returning its URL.
func benchServer(b *testing.B, kind string, size int) (string, []byte) {
	s := storeOf(b, kind)
	data := bytes.Repeat([]byte("firmware"), size/8)
	blob, err := s.Put(context.Background(), bytes.NewReader(data), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(Handler(s))
	b.Cleanup(srv.Close)
	url := srv.URL + "/" + blob.SHA256
	download(b, url, "")
	return url, data
}

// benchClient keeps a connection for each of the concurrent downloads, as
// devices do, rather than the default transport's two per host.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// download GETs url, with a Range header unless rng is empty, and returns
// how many bytes of body came.
func download(b *testing.B, url, rng string) int64 {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Error(err)
		return 0
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	return n
}
